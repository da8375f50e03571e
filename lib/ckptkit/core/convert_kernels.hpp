// Internal to core/ and io/: the element conversions of dtype.cpp (bf16/f16 <-> f32) and the byte
// planes of the lossless codec (io/lossless.cpp), written once over Google Highway for each SIMD
// path (convert_kernels.cpp). Each kernel does whole vectors from the start and returns how many
// elements it did; the caller finishes the tail with its scalar loop, which is the reference: the
// vector code does the same integer and float operations, so every path gives the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptkit/core/simd_path.hpp"

namespace ckpt::convert {

struct Kernels {
  /// out[i] = the f32 value of the 16-bit float at p + 2i (any alignment), i < n.
  std::size_t (*bf16_to_f32)(const std::byte* p, float* out, std::size_t n);
  std::size_t (*f16_to_f32)(const std::byte* p, float* out, std::size_t n);
  /// The 16-bit float (round to nearest even, NaN kept a NaN) of in[i] at p + 2i, i < n.
  std::size_t (*f32_to_bf16)(const float* in, std::byte* p, std::size_t n);
  std::size_t (*f32_to_f16)(const float* in, std::byte* p, std::size_t n);
  /// out[i] = in[i] rounded to odd in f32 (dtype.cpp's f64_to_f32_odd), i < n.
  std::size_t (*f64_to_f32_odd)(const double* in, float* out, std::size_t n);
  /// Byte planes of `count` bf16 values (2 planes) or f32 values (4 planes), plane k at
  /// planes + k·count (io/lossless.cpp's layout), and back.
  std::size_t (*split_bf16)(const std::uint8_t* in, std::size_t count, std::uint8_t* planes);
  std::size_t (*split_f32)(const std::uint8_t* in, std::size_t count, std::uint8_t* planes);
  std::size_t (*join_bf16)(const std::uint8_t* planes, std::size_t count, std::uint8_t* out);
  std::size_t (*join_f32)(const std::uint8_t* planes, std::size_t count, std::uint8_t* out);
};

/// The kernels of `path`, or nullptr for Scalar (and for a path this build has none for).
const Kernels* kernels_for(SimdPath path);

}  // namespace ckpt::convert
