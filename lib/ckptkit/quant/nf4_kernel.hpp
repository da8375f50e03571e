// The inner loops of blockwise quantization: one block's codes against a sorted 16-level codebook
// (NF4, any 16 sorted levels), packed high nibble first, with its error sums, in one pass over
// float32 or bf16 input; the block absmax of bf16 input; the midpoint search of larger codebooks.
// Each runs on a SimdPath (simd_path.hpp): the portable scalar reference or a Highway target
// (simd_kernels.cpp), chosen at run time. Every path gives the same bytes and the same sums: all
// add element i to lane i % 16 with the same float operations (the kernel files are built with
// -ffp-contract=off, the fused multiply-adds are explicit), and LaneSums folds the lanes in a
// fixed order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ckptkit/core/simd_path.hpp"

namespace ckpt::quant {

/// Error sums in 16 lanes: Σ (x - y·s)², Σ x² and max |x - y·s|. Runs of elements whose lengths
/// are multiples of 16 keep every element in lane (index % 16). Each run (one kernel call, i.e.
/// one block of at most 4096 values) is summed in float per lane, then added to the f64 lanes:
/// the block sums carry float rounding (≤ 2^-24 · 256 relative), the totals do not grow it.
struct LaneSums {
  double se[16] = {}, sx[16] = {};
  double max_abs = 0;
  /// Adds x[0..n) against their levels y[0..n) times s, element i to lane i % 16.
  void add(const float* x, const float* y, float s, std::int64_t n);
  /// Adds one run's per-lane float sums.
  void fold(const float* se_run, const float* sx_run, float max_run);
  double sum_se() const;  ///< lanes 0..15 in order
  double sum_sx() const;
};

/// A sorted 16-level codebook as the kernels read it: its 15 midpoints plus +inf, and its levels.
struct Book16 {
  float mids[16];
  float levels[16];
  /// `levels` sorted ascending (16 of them); `mids` as Codebook computes them.
  Book16(std::span<const float> levels, std::span<const float> mids);
};

/// Codes of x[0..n) · inv (the count of midpoints strictly below, as Codebook::encode) packed
/// high nibble first into out[0..(n+1)/2) (an odd n leaves the last low nibble 0); with `err`,
/// adds the error of levels · s against x. On `path` (default: the active one).
void encode_pack_nf4(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, LaneSums* err, SimdPath path = active_simd_path());
/// The same for bf16 input: n values read from 2n bytes (any alignment), widened on the fly.
void encode_pack_nf4_bf16(const Book16& book, const std::byte* x, std::int64_t n, float inv,
                          float s, std::uint8_t* out, LaneSums* err,
                          SimdPath path = active_simd_path());

/// encode_pack_nf4 over consecutive blocks: n values in blocks of `block` values (a multiple of
/// 16; the last block may be shorter), block k scaled by inv[k], its errors against levels ·
/// s[k] (`s` is read only with `err`), its codes at out + k·block/2. The same bytes and sums as
/// one encode_pack_nf4 call per block, in block order; the vector paths build their tables once.
void encode_pack_nf4_blocks(const Book16& book, const float* x, std::int64_t n, std::int64_t block,
                            const float* inv, const float* s, std::uint8_t* out, LaneSums* err,
                            SimdPath path = active_simd_path());
void encode_pack_nf4_blocks_bf16(const Book16& book, const std::byte* x, std::int64_t n,
                                 std::int64_t block, const float* inv, const float* s,
                                 std::uint8_t* out, LaneSums* err,
                                 SimdPath path = active_simd_path());

/// Codes by the midpoint rule for a sorted codebook of up to 256 levels (Codebook::encode_many):
/// codes[i] = the number of midpoints strictly below x[i] (NaN: 0). `padded` holds the midpoints
/// then +inf up to 16·(runs + 1) floats (runs = ceil(midpoints / 16)); `run_last[k]` =
/// padded[16k + 15] for k < runs and +inf after (16 floats). Two counts of 16 comparisons: the
/// whole runs below x, then x's place in the next run.
void count_midpoints_below(const float* run_last, const float* padded, const float* x,
                           std::size_t n, std::uint8_t* codes, SimdPath path = active_simd_path());

/// Per block of `block` values (the last one may be shorter), max |x| of bf16 input x[0..n)
/// (2n bytes, any alignment), as float: out[0..ceil(n/block)). Compares the 15 magnitude bits as
/// integers, so a block holding Inf or NaN gets Inf or NaN. `block` is a multiple of 16.
void bf16_block_absmax(const std::byte* x, std::int64_t n, std::int64_t block, float* out,
                       SimdPath path = active_simd_path());
/// The same for f32 input, any block length: the 31 magnitude bits compared as integers, so a
/// block holding Inf or NaN gets Inf or NaN (for finite blocks: max |x|).
void f32_block_absmax(const float* x, std::int64_t n, std::int64_t block, float* out,
                      SimdPath path = active_simd_path());

/// out[i] = levels[c_i] · s for the n 4-bit codes packed high nibble first at `packed` (16 levels):
/// one block of dequantize().
void dequantize16(const std::uint8_t* packed, std::int64_t n, float s, const float* levels,
                  float* out, SimdPath path = active_simd_path());

}  // namespace ckpt::quant
