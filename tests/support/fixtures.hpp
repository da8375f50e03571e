// Test helpers: temporary directories, writing small safetensors files, data paths.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"

namespace ckpt::test {

/// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "ckptkit-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// The project's data/ folder (CKPTKIT_DATA, set by ctest).
std::filesystem::path data_dir();
/// ../shared/data when it exists beside the project, else empty (tests that need it skip).
std::filesystem::path shared_data_dir();

/// Writes raw bytes to a file.
void write_bytes(const std::filesystem::path& p, const std::vector<std::byte>& bytes);
std::vector<std::byte> read_bytes(const std::filesystem::path& p);
/// Builds a safetensors file from a header JSON text and a data section.
std::vector<std::byte> raw_safetensors(const std::string& header_json, std::size_t data_bytes);

/// Deterministic Gaussian values.
std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float scale = 1.0f);

}  // namespace ckpt::test
