#include "ckptkit/io/file_bytes.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"

namespace ckpt {
namespace {

// The SIGBUS guard. A mapped input that shrinks while we read it raises SIGBUS on the lost pages;
// the handler maps a zero page there and marks the file, so the read goes on and the run fails
// with a named Io error before anything is committed (check_inputs_intact). A signal handler can
// only reach process-wide state: this table, the one other such state beside core/interrupt.
struct GuardSlot {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  std::atomic<bool> lost{false};
  const std::string* name = nullptr;  // written before `begin` is published
};
constexpr int kGuardSlots = 4096;
GuardSlot g_guard[kGuardSlots];
std::uintptr_t g_page = 4096;

void on_sigbus(int, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (auto& s : g_guard) {
    const std::uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b == 0 || addr < b || addr >= s.end.load(std::memory_order_acquire)) continue;
    void* page = reinterpret_cast<void*>(addr & ~(g_page - 1));
    if (::mmap(page, g_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
        MAP_FAILED) {
      s.lost.store(true, std::memory_order_release);
      return;
    }
  }
  ::signal(SIGBUS, SIG_DFL);  // not one of ours: the faulting access repeats, now fatal
}

int guard_mapping(const void* p, std::size_t size, const std::string* name) {
  static const bool installed = [] {
    g_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return ::sigaction(SIGBUS, &sa, nullptr) == 0;
  }();
  if (!installed) return -1;
  for (int i = 0; i < kGuardSlots; ++i) {
    std::uintptr_t expected = 0;
    auto& s = g_guard[i];
    if (s.begin.load() != 0) continue;
    s.name = name;
    s.lost.store(false);
    s.end.store(reinterpret_cast<std::uintptr_t>(p) + size);
    if (s.begin.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(p))) return i;
  }
  return -1;  // more live mappings than slots: unguarded
}

}  // namespace

bool is_zstd_path(const std::filesystem::path& path) {
  return path.extension() == ".zst";
}

void check_expansion(std::uint64_t compressed, std::uint64_t expanded, const std::string& name) {
  const std::uint64_t cap = compressed * kMaxExpansionRatio + kExpansionAllowance;
  if (compressed <= (UINT64_MAX - kExpansionAllowance) / kMaxExpansionRatio && expanded > cap)
    fail(ErrorKind::Format,
         name + ": expands to more than " + std::to_string(expanded) + " bytes from " +
             std::to_string(compressed) + ", over " + std::to_string(kMaxExpansionRatio) +
             "x its size; refused as a decompression bomb (real weights compress below 2x)");
}

std::vector<std::byte> zstd_decompress(std::span<const std::byte> input, const std::string& name) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  std::vector<std::byte> out;
  const unsigned long long expected = ZSTD_getFrameContentSize(input.data(), input.size());
  if (expected != ZSTD_CONTENTSIZE_UNKNOWN && expected != ZSTD_CONTENTSIZE_ERROR) {
    check_expansion(input.size(), expected, name);  // a frame claiming 900 GB fails here, by name
    out.reserve(static_cast<std::size_t>(expected));
  }
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  std::vector<std::byte> chunk(ZSTD_DStreamOutSize());
  std::size_t ret = 1;  // 0 once the last frame was decoded and flushed
  for (;;) {
    const std::size_t in_before = in.pos;
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    const std::size_t r = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(r))
      fail(ErrorKind::Format, name + ": corrupt zstd stream (" + ZSTD_getErrorName(r) + ")");
    out.insert(out.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(o.pos));
    check_expansion(input.size(), out.size(), name);
    throw_if_interrupted();  // 128 KiB per step: Ctrl-C is seen within microseconds
    if (in.pos == in_before && o.pos == 0) {
      // No progress. After a frame that ended exactly at a full buffer the decoder now waits for
      // a next frame (a non-zero hint): the stream is complete if the last frame was.
      if (r == 0) ret = 0;
      break;
    }
    ret = r;
    // Done when all input is consumed and the decoder did not fill the buffer (nothing held back).
    if (in.pos == in.size && o.pos < o.size) break;
  }
  if (ret != 0) fail(ErrorKind::Format, name + ": truncated zstd stream");
  return out;
}

std::shared_ptr<const FileBytes> FileBytes::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO named like a checkpoint must not wait for a writer; a regular
  // file ignores the flag.
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
    f->guard_ = guard_mapping(p, f->size_, &f->name_);
  }
  ::close(fd);
  if (is_zstd_path(path)) {
    f->owned_ = zstd_decompress(f->bytes(), name);
    if (f->guard_ >= 0 && g_guard[f->guard_].lost.load())
      fail(ErrorKind::Io, name + ": changed or truncated while it was read");
    if (f->guard_ >= 0) g_guard[f->guard_].begin.store(0, std::memory_order_release);
    f->guard_ = -1;
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
  if (guard_ >= 0) g_guard[guard_].begin.store(0, std::memory_order_release);
  if (map_) ::munmap(map_, size_);
}

bool FileBytes::intact() const {
  return guard_ < 0 || !g_guard[guard_].lost.load(std::memory_order_acquire);
}

void check_inputs_intact() {
  for (const auto& s : g_guard)
    if (s.begin.load(std::memory_order_acquire) != 0 && s.lost.load(std::memory_order_acquire))
      fail(ErrorKind::Io, *s.name +
                              ": changed or truncated while it was read (a page past its new end "
                              "could not be read); nothing was written");
}

void FileBytes::release(std::size_t offset, std::size_t length) const {
  if (!map_ || length == 0) return;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = (offset + page - 1) / page * page;
  const std::size_t end = (offset + length) / page * page;
  if (end > begin) ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

std::string read_input_text(const std::filesystem::path& path, std::size_t max_bytes) {
  const auto bytes = FileBytes::open(path);
  const auto span = bytes->bytes();
  if (span.size() > max_bytes)
    fail(ErrorKind::Format, path.string() + ": " + std::to_string(span.size()) +
                                " bytes, more than the " + std::to_string(max_bytes) +
                                " this file may hold");
  return std::string(reinterpret_cast<const char*>(span.data()), span.size());
}

}  // namespace ckpt
