// Internal to quant/: the vector kernels of nf4_kernel.hpp for one SIMD path, as function
// pointers (built by Highway's foreach_target in simd_kernels.cpp). Each does the whole 16-value
// groups of its input and leaves the tail to the portable kernel, whose lanes line up with it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptkit/core/simd_path.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"

namespace ckpt::quant::simd {

/// One kernel call's error sums: element i in lane i % 16, in float.
struct RunSums {
  float se[16] = {}, sx[16] = {};
  float max_abs = 0;
};

struct Kernels {
  /// Codes and packed bytes of x[0..n16) (n16 = n rounded down to 16); with `sums`, stores the
  /// groups' lane sums there. Returns n16.
  std::int64_t (*encode_f32)(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                             std::uint8_t* out, RunSums* sums);
  std::int64_t (*encode_bf16)(const Book16& book, const std::byte* x, std::int64_t n, float inv,
                              float s, std::uint8_t* out, RunSums* sums);
  /// As encode_pack_nf4_blocks for `count` whole blocks of `block` values (a multiple of 16).
  void (*encode_blocks_f32)(const Book16& book, const float* x, std::int64_t count,
                            std::int64_t block, const float* inv, const float* s, std::uint8_t* out,
                            LaneSums* err);
  void (*encode_blocks_bf16)(const Book16& book, const std::byte* x, std::int64_t count,
                             std::int64_t block, const float* inv, const float* s,
                             std::uint8_t* out, LaneSums* err);
  /// As bf16_block_absmax and f32_block_absmax.
  void (*bf16_absmax)(const std::byte* x, std::int64_t n, std::int64_t block, float* out);
  void (*f32_absmax)(const float* x, std::int64_t n, std::int64_t block, float* out);
  /// As count_midpoints_below.
  void (*count_below)(const float* run_last, const float* padded, const float* x, std::size_t n,
                      std::uint8_t* codes);
  /// As dequantize16 for whole vectors from the start; returns how many values it did.
  std::int64_t (*dequant16)(const std::uint8_t* packed, std::int64_t n, float s,
                            const float* levels, float* out);
  /// As encode_fp4 (codebook.hpp) for whole vectors from the start, with its tables; returns how
  /// many values it did.
  std::size_t (*encode_fp4)(const float* x, std::size_t n, float inv, const float* thresholds,
                            const std::uint8_t* code_of_rank, const float* levels,
                            std::uint8_t* codes, float* levels_out);
};

/// The kernels of `path`, or nullptr for Scalar and for a path this build has none for.
const Kernels* kernels_for(SimdPath path);

}  // namespace ckpt::quant::simd
