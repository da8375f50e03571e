// The inner loop of 4-bit quantization against a sorted 16-level codebook (NF4, any 16 sorted
// levels): one block's codes, packed high nibble first, and its error sums, in one pass. A
// portable version and an AVX-512 one (chosen at run time) give the same bytes and the same sums:
// both add element i to lane i % 16 with explicit fused multiply-adds, and LaneSums folds the
// lanes in a fixed order.
#pragma once

#include <cstdint>
#include <span>

namespace ckpt::quant {

/// Error sums in 16 lanes: Σ (x - y·s)², Σ x² in f64 and max |x - y·s|. Runs of elements whose
/// lengths are multiples of 16 keep every element in lane (index % 16).
struct LaneSums {
  double se[16] = {}, sx[16] = {};
  double max_abs = 0;
  /// Adds x[0..n) against their levels y[0..n) times s, element i to lane i % 16.
  void add(const float* x, const float* y, float s, std::int64_t n);
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
/// adds the error of levels · s against x. Dispatches to the AVX-512 kernel when the CPU has it.
void encode_pack_nf4(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, LaneSums* err);
/// The portable kernel (the reference the AVX-512 one must equal; tests compare them).
void encode_pack_nf4_portable(const Book16& book, const float* x, std::int64_t n, float inv,
                              float s, std::uint8_t* out, LaneSums* err);
/// True when encode_pack_nf4 runs the AVX-512 kernel on this CPU.
bool nf4_kernel_is_avx512();

}  // namespace ckpt::quant
