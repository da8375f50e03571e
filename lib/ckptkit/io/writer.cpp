#include "ckptkit/io/writer.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace fs = std::filesystem;

/// Where bytes go: a plain file, or a zstd stream into a file. Closing reports write errors
/// (ENOSPC on a full disk surfaces here or in write()).
class ByteSink {
 public:
  ByteSink(const fs::path& path, bool zstd, int level) : path_(path.string()) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(ErrorKind::Io, path_ + ": cannot create (" + std::strerror(errno) + ")");
    if (zstd) {
      cctx_ = ZSTD_createCCtx();
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1);
      zbuf_.resize(ZSTD_CStreamOutSize());
    }
  }
  ~ByteSink() {
    if (cctx_) ZSTD_freeCCtx(cctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  ByteSink(const ByteSink&) = delete;
  ByteSink& operator=(const ByteSink&) = delete;

  /// Allocates the file's blocks for `bytes` up front when they are known (a plain file): the
  /// file system then doesn't reserve blocks page by page as writes arrive (about a third of
  /// write()'s time on ext4), and a full disk fails here, before any work is written. The
  /// length stays what is written (KEEP_SIZE). A file system without fallocate is left as is.
  void reserve(std::uint64_t bytes) {
    if (cctx_ || bytes == 0) return;
    if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes)) == 0) return;
    if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)
      fail(ErrorKind::Io, path_ + ": write failed (" + std::strerror(errno) + ")");
  }

  void write(std::span<const std::byte> data) {
    if (!cctx_) return raw_write(data.data(), data.size());
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer out{zbuf_.data(), zbuf_.size(), 0};
      const std::size_t r = ZSTD_compressStream2(cctx_, &out, &in, ZSTD_e_continue);
      if (ZSTD_isError(r)) fail(ErrorKind::Io, path_ + ": zstd: " + ZSTD_getErrorName(r));
      raw_write(zbuf_.data(), out.pos);
    }
  }

  void close() {
    if (cctx_) {
      ZSTD_inBuffer in{nullptr, 0, 0};
      for (;;) {
        ZSTD_outBuffer out{zbuf_.data(), zbuf_.size(), 0};
        const std::size_t r = ZSTD_compressStream2(cctx_, &out, &in, ZSTD_e_end);
        if (ZSTD_isError(r)) fail(ErrorKind::Io, path_ + ": zstd: " + ZSTD_getErrorName(r));
        raw_write(zbuf_.data(), out.pos);
        if (r == 0) break;
      }
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
      fail(ErrorKind::Io, path_ + ": write failed (" + std::strerror(errno) + ")");
  }

 private:
  void raw_write(const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(ErrorKind::Io, path_ + ": write failed (" + std::strerror(errno) + ")");
      }
      c += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  std::string path_;
  int fd_ = -1;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<std::byte> zbuf_;
};

std::vector<std::pair<std::size_t, std::size_t>> plan_shards(const std::vector<TensorSpec>& plan,
                                                             std::uint64_t max_shard_size) {
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  std::size_t first = 0;
  std::uint64_t size = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const std::uint64_t b = plan[i].nbytes();
    if (i > first && size + b > max_shard_size) {
      ranges.emplace_back(first, i);
      first = i;
      size = 0;
    }
    size += b;
  }
  ranges.emplace_back(first, plan.size());
  return ranges;
}

namespace {

std::string shard_file_name(const std::string& base, std::size_t i, std::size_t n) {
  if (n == 1) return base + ".safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, n);
  return base + buf;
}

}  // namespace

ShardedWriter::ShardedWriter(fs::path dir, std::vector<TensorSpec> plan, WriterOptions options)
    : dir_(std::move(dir)), plan_(std::move(plan)), options_(std::move(options)) {
  std::unordered_set<std::string> names;
  for (const auto& t : plan_)
    if (!names.insert(t.name).second)
      fail(ErrorKind::Internal, "output plan names tensor '" + t.name + "' twice");
  shard_ranges_ = plan_shards(plan_, options_.max_shard_size);
  for (std::size_t i = 0; i < shard_ranges_.size(); ++i)
    shard_names_.push_back(shard_file_name(options_.base_name, i, shard_ranges_.size()));
  open_shard(0);
}

ShardedWriter::~ShardedWriter() = default;

void ShardedWriter::open_shard(std::size_t s) {
  shard_ = s;
  const auto [first, last] = shard_ranges_[s];
  std::vector<TensorInfo> infos;
  std::uint64_t offset = 0;
  for (std::size_t i = first; i < last; ++i) {
    const auto& p = plan_[i];
    infos.push_back({p.name, p.dtype, p.shape, offset, offset + p.nbytes()});
    offset += p.nbytes();
  }
  std::string file = shard_names_[s] + (options_.zstd ? ".zst" : "");
  sink_ = std::make_unique<ByteSink>(dir_ / file, options_.zstd, options_.zstd_level);
  files_.push_back(file);
  const auto header = serialize_header(infos, options_.metadata, options_.write_metadata);
  sink_->reserve(header.size() + offset);
  sink_->write(header);
}

void ShardedWriter::close_shard() {
  sink_->close();
  sink_.reset();
}

void ShardedWriter::write(const std::string& name, std::span<const std::byte> bytes) {
  CKPT_ASSERT(!finished_);
  if (next_ >= plan_.size() || plan_[next_].name != name)
    fail(ErrorKind::Internal, "writer got tensor '" + name + "' out of plan order");
  if (bytes.size() != plan_[next_].nbytes())
    fail(ErrorKind::Internal,
         located("", name,
                 "writer got " + std::to_string(bytes.size()) + " bytes, plan says " +
                     std::to_string(plan_[next_].nbytes())));
  if (next_ >= shard_ranges_[shard_].second) {
    close_shard();
    open_shard(shard_ + 1);
  }
  sink_->write(bytes);
  ++next_;
}

void ShardedWriter::finish() {
  if (finished_) return;
  if (next_ != plan_.size())
    fail(ErrorKind::Internal, "writer finished after " + std::to_string(next_) + " of " +
                                  std::to_string(plan_.size()) + " tensors");
  // Empty trailing shards cannot happen: plan_shards never makes an empty range except for an
  // empty plan, whose single shard is just a header.
  while (shard_ + 1 < shard_ranges_.size()) {
    close_shard();
    open_shard(shard_ + 1);
  }
  close_shard();
  if (shard_ranges_.size() > 1) {
    nlohmann::ordered_json index;
    std::uint64_t total = 0;
    for (const auto& p : plan_)
      total += p.nbytes();
    index["metadata"] = {{"total_size", total}};
    nlohmann::json wm = nlohmann::json::object();  // sorted keys, as transformers writes it
    for (std::size_t s = 0; s < shard_ranges_.size(); ++s)
      for (std::size_t i = shard_ranges_[s].first; i < shard_ranges_[s].second; ++i)
        wm[plan_[i].name] = shard_names_[s];
    index["weight_map"] = wm;
    const std::string name = options_.base_name + ".safetensors.index.json";
    std::FILE* f = std::fopen((dir_ / name).c_str(), "wb");
    if (!f)
      fail(ErrorKind::Io,
           (dir_ / name).string() + ": cannot create (" + std::strerror(errno) + ")");
    const std::string text = index.dump(2) + "\n";
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, (dir_ / name).string() + ": write failed");
    files_.push_back(name);
  }
  finished_ = true;
}

void write_safetensors_file(const fs::path& path, const std::vector<OwnedTensor>& tensors,
                            const Metadata& metadata, bool zstd) {
  std::vector<TensorInfo> infos;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    infos.push_back({t.name, t.dtype, t.shape, offset, offset + t.bytes.size()});
    offset += t.bytes.size();
  }
  const fs::path target = zstd ? fs::path(path.string() + ".zst") : path;
  ByteSink sink(target, zstd, 3);
  sink.write(serialize_header(infos, metadata, true));
  for (const auto& t : tensors)
    sink.write(t.bytes);
  sink.close();
}

}  // namespace ckpt
