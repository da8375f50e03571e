// Read-only bytes of an input file: an mmap for plain files, a decompressed buffer for `.zst`.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ckpt {

/// The whole content of one input file. Plain files are mapped (zero-copy, paged on demand);
/// files whose name ends in ".zst" are decompressed into memory once. Non-copyable.
class FileBytes {
 public:
  /// Opens `path`; throws Error(Io) when it cannot be read, Error(Format) for a bad zstd stream.
  static std::shared_ptr<const FileBytes> open(const std::filesystem::path& path);
  /// Wraps bytes already in memory (tests, fuzzing).
  static std::shared_ptr<const FileBytes> from_memory(std::vector<std::byte> bytes,
                                                      std::string name);

  ~FileBytes();
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  /// The name used in error messages (the path as given).
  const std::string& name() const { return name_; }
  /// Tells the kernel the given range will not be needed soon (keeps RSS low when streaming).
  void release(std::size_t offset, std::size_t length) const;
  /// False once a page of the mapping could not be read because the file shrank under us (the
  /// SIGBUS was absorbed: that page reads as zeros from then on).
  bool intact() const;

 private:
  FileBytes() = default;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  void* map_ = nullptr;           // mmap base, or nullptr
  std::vector<std::byte> owned_;  // decompressed content for .zst
  std::string name_;
  int guard_ = -1;  // slot in the SIGBUS guard (file_bytes.cpp), or -1
};

/// Error(Io) "<file>: changed or truncated while it was read" for the first mapped input that lost
/// pages during the run; nothing when every input is intact. Called before an output is
/// committed and when a run fails, so a truncated input is named instead of what it caused.
void check_inputs_intact();

/// The whole content of an input text file (JSON configs, indexes), decompressed when it ends in
/// ".zst"; Error(Io) naming it when it cannot be read, Error(Format) when it holds more than
/// `max_bytes` (checked before the text is copied).
std::string read_input_text(const std::filesystem::path& path,
                            std::size_t max_bytes = static_cast<std::size_t>(-1));

/// True when the file name ends in ".zst".
bool is_zstd_path(const std::filesystem::path& path);
/// Decompression bombs: no compressed input we read may expand past this many times its own size
/// (plus kExpansionAllowance). Weights compress 1.1-1.5x and even an all-zero LoRA B beside its A
/// stays below 2x, so a larger claim is a crafted file, refused before memory is spent on it.
inline constexpr std::uint64_t kMaxExpansionRatio = 1024;
inline constexpr std::uint64_t kExpansionAllowance = std::uint64_t{64} << 20;
/// Error(Format) "<name>: expands to N bytes from M, more than 1024x: ..." when `expanded` exceeds
/// the cap for `compressed` bytes.
void check_expansion(std::uint64_t compressed, std::uint64_t expanded, const std::string& name);

/// Decompresses a whole zstd file (one or more frames); throws Error(Format) naming the file.
std::vector<std::byte> zstd_decompress(std::span<const std::byte> input, const std::string& name);

}  // namespace ckpt
