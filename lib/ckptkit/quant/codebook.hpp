// Quantization codebooks: bitsandbytes' NF4 table, NF-b built by the same quantile rule,
// bitsandbytes' signed 8-bit "dynamic" map, and symmetric INT-b levels. Every codebook is a sorted
// list of levels in [-1, 1]; a code is the index of a level. Encoding is nearest level by the
// midpoint rule bitsandbytes uses: x above the midpoint of two neighbours goes to the upper one.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/simd_path.hpp"

namespace ckpt::quant {

/// bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")), index = code, bit for bit.
std::span<const float, 16> nf4_table();

/// bitsandbytes' FP4 table (get_4bit_type("fp4"): the E2M1-like values 0, 0.0625, 8, 12, 4, 6, 2, 3
/// and their negatives over 12), index = code, as the dequantization kernel writes them. Not
/// sorted: bit 3 is the sign, bits 0..2 the magnitude's pattern.
std::span<const float, 16> fp4_table();

/// Codes of bitsandbytes' FP4 quantizer (dQuantizeFP4 in csrc/kernels.cu) for already normalized
/// values: the sign bit from x < 0, the magnitude against the kernel's own seven thresholds (its
/// literals, which differ from the float midpoints in the last digits); ties go to the smaller
/// magnitude on both sides. With `levels`, also fp4_table()[code] of each value.
void encode_fp4(const float* x, std::size_t n, float inv, std::uint8_t* codes, float* levels,
                SimdPath path = active_simd_path());

/// Standard normal CDF and its inverse (Acklam's rational approximation refined by one Halley
/// step on erfc, accurate to ~1e-15 relative in (0, 1)).
double normal_cdf(double x);
double normal_ppf(double p);

/// bitsandbytes/LQ-LoRA/LoftQ's NF offset: the top quantile, ((1 - 1/30) + (1 - 1/32)) / 2.
inline constexpr double kNfOffset = 0.9677083;

/// NF-b levels (2 <= b <= 8) by create_normal_map's rule: ppf of linspace(offset, 0.5, 2^(b-1)+1)
/// without its last point (positive side), minus ppf of linspace(offset, 0.5, 2^(b-1)) without its
/// last point (negative side), plus 0, sorted, divided by the max. Emulates the float32 linspace
/// and float32 division the reference does; b = 4 therefore reproduces nf4_table().
std::vector<float> normal_float_levels(int bits);
/// The same rule entirely in double precision (for tests).
std::vector<double> normal_float_levels_f64(int bits);

/// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted
/// levels (127 negative, 0, 127 positive, with 1.0 at the top), float32 as torch computes them.
std::vector<float> dynamic_map();

/// Symmetric INT-b levels k / (2^(b-1) - 1) for k = -(2^(b-1) - 1) .. 2^(b-1) - 1 (2^b - 1 levels).
std::vector<float> int_levels(int bits);

/// A sorted codebook with precomputed midpoints for nearest-level encoding.
class Codebook {
 public:
  Codebook() = default;
  explicit Codebook(std::vector<float> levels);

  const std::vector<float>& levels() const { return levels_; }
  const std::vector<float>& midpoints() const { return mids_; }
  std::size_t size() const { return levels_.size(); }
  /// Index of the exactly-zero level (codebooks here all have one), used for all-zero blocks.
  std::uint8_t zero_code() const { return zero_code_; }
  /// Nearest level of an already normalized value: the number of midpoints strictly below x.
  std::uint8_t encode(float x) const;
  /// encode() of x[0..n) into codes.
  void encode_many(const float* x, std::size_t n, std::uint8_t* codes) const;

 private:
  std::vector<float> levels_, mids_;
  std::vector<float> padded_mids_;    // mids_, +inf to a multiple of 16, then 16 more +inf
  std::array<float, 16> run_last_{};  // padded_mids_[16k + 15]; at most 255 midpoints = 16 runs
  std::uint8_t zero_code_ = 0;
};

}  // namespace ckpt::quant
