// safetensors format: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data
// section. The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) plus an optional "__metadata__" object of string values. A valid
// file's tensors tile the data section exactly: no gaps, no overlaps, nothing past the end.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ckptkit/core/tensor.hpp"

namespace ckpt {

/// Largest header accepted (the reference implementation's limit is 100 MB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t begin = 0;  // offset in the data section
  std::uint64_t end = 0;

  std::uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by data offset (= storage order)
  Metadata metadata;                // "__metadata__" in file order
  bool has_metadata = false;
  std::uint64_t data_start = 0;  // 8 + N
  std::uint64_t data_size = 0;
};

/// Parses and validates a whole file's bytes. Every failure throws Error(Format) with one line
/// naming `file_name` and, where there is one, the tensor.
SafetensorsHeader parse_safetensors(std::span<const std::byte> file, const std::string& file_name);

/// Serializes a header for tensors laid out back to back in `tensors` order; pads with spaces to a
/// multiple of 8 as the reference writer does. Returns the 8-byte length prefix plus the JSON.
std::vector<std::byte> serialize_header(const std::vector<TensorInfo>& tensors,
                                        const Metadata& metadata, bool write_metadata);

}  // namespace ckpt
