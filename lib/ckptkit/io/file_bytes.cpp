#include "ckptkit/io/file_bytes.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "ckptkit/core/error.hpp"

namespace ckpt {

bool is_zstd_path(const std::filesystem::path& path) {
  return path.extension() == ".zst";
}

std::vector<std::byte> zstd_decompress(std::span<const std::byte> input, const std::string& name) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  std::vector<std::byte> out;
  const unsigned long long expected = ZSTD_getFrameContentSize(input.data(), input.size());
  if (expected != ZSTD_CONTENTSIZE_UNKNOWN && expected != ZSTD_CONTENTSIZE_ERROR &&
      expected < (1ull << 40))
    out.reserve(static_cast<std::size_t>(expected));
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  std::vector<std::byte> chunk(ZSTD_DStreamOutSize());
  std::size_t ret = 1;
  for (;;) {
    const std::size_t in_before = in.pos;
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(ret))
      fail(ErrorKind::Format, name + ": corrupt zstd stream (" + ZSTD_getErrorName(ret) + ")");
    out.insert(out.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(o.pos));
    // Done when all input is consumed and the decoder did not fill the buffer (nothing held back).
    if (in.pos == in.size && o.pos < o.size) break;
    if (in.pos == in_before && o.pos == 0) break;  // no progress: malformed
  }
  if (ret != 0) fail(ErrorKind::Format, name + ": truncated zstd stream");
  return out;
}

std::shared_ptr<const FileBytes> FileBytes::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::Io, name + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail(ErrorKind::Io, name + ": cannot stat (" + std::strerror(e) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, name + ": not a regular file");
  }
  std::shared_ptr<FileBytes> f(new FileBytes());
  f->name_ = name;
  f->size_ = static_cast<std::size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      fail(ErrorKind::Io, name + ": cannot map (" + std::strerror(e) + ")");
    }
    f->map_ = p;
    f->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  if (is_zstd_path(path)) {
    f->owned_ = zstd_decompress(f->bytes(), name);
    ::munmap(f->map_, f->size_);
    f->map_ = nullptr;
    f->data_ = f->owned_.data();
    f->size_ = f->owned_.size();
  }
  return f;
}

std::shared_ptr<const FileBytes> FileBytes::from_memory(std::vector<std::byte> bytes,
                                                        std::string name) {
  std::shared_ptr<FileBytes> f(new FileBytes());
  f->owned_ = std::move(bytes);
  f->data_ = f->owned_.data();
  f->size_ = f->owned_.size();
  f->name_ = std::move(name);
  return f;
}

FileBytes::~FileBytes() {
  if (map_) ::munmap(map_, size_);
}

void FileBytes::release(std::size_t offset, std::size_t length) const {
  if (!map_ || length == 0) return;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = (offset + page - 1) / page * page;
  const std::size_t end = (offset + length) / page * page;
  if (end > begin) ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

std::string read_input_text(const std::filesystem::path& path) {
  const auto bytes = FileBytes::open(path);
  const auto span = bytes->bytes();
  return std::string(reinterpret_cast<const char*>(span.data()), span.size());
}

}  // namespace ckpt
