// Helpers for fuzz targets whose parser takes a path (Checkpoint::open, adapter directories): the
// input is written to a per-process scratch directory under /dev/shm (memory, no disk wear).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fuzz {

/// The scratch directory of this process, created on first use.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("CKPTKIT_FUZZ_TMP");
    std::filesystem::path d = std::filesystem::path(base ? base : "/dev/shm") /
                              ("ckptkit-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

/// Writes `size` bytes to scratch_dir()/name and returns its path.
inline std::filesystem::path write_file(const std::string& name, const void* data,
                                        std::size_t size) {
  const auto path = scratch_dir() / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

inline void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace fuzz
