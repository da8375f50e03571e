#include "ckptkit/quant/codebook.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ckptkit/core/error.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"
#include "ckptkit/quant/simd_kernels.hpp"

namespace ckpt::quant {
namespace {

// bitsandbytes/functional.py get_4bit_type("nf4"): the floats as written in the source.
constexpr std::array<float, 16> kNf4 = {-1.0f,
                                        -0.6961928009986877f,
                                        -0.5250730514526367f,
                                        -0.39491748809814453f,
                                        -0.28444138169288635f,
                                        -0.18477343022823334f,
                                        -0.09105003625154495f,
                                        0.0f,
                                        0.07958029955625534f,
                                        0.16093020141124725f,
                                        0.24611230194568634f,
                                        0.33791524171829224f,
                                        0.44070982933044434f,
                                        0.5626170039176941f,
                                        0.7229568362236023f,
                                        1.0f};

// get_4bit_type("fp4")'s [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, ...] / 12 in float32: the same floats
// as the literals of dDequantizeFP4Tree (5.208333333e-03f, 0.66666667f, ...); a test checks both.
constexpr std::array<float, 16> kFp4 = {
    0.0f,          0.0625f / 12.0f, 8.0f / 12.0f,  12.0f / 12.0f,    4.0f / 12.0f,  6.0f / 12.0f,
    2.0f / 12.0f,  3.0f / 12.0f,    -0.0f,         -0.0625f / 12.0f, -8.0f / 12.0f, -12.0f / 12.0f,
    -4.0f / 12.0f, -6.0f / 12.0f,   -2.0f / 12.0f, -3.0f / 12.0f};

// dQuantizeFP4's thresholds in ascending order and the magnitude pattern of each rank.
constexpr std::array<float, 7> kFp4Thresholds = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                                 0.4166667f,  0.583333f,  0.8333333f};
constexpr std::array<std::uint8_t, 8> kFp4CodeOfRank = {0b000, 0b001, 0b110, 0b111,
                                                        0b100, 0b101, 0b010, 0b011};

// torch.linspace(start, end, steps) for float32 on CPU: step in float, values from the start
// below halfway and from the end above it. The kernel evaluates pairs of 8-lane vectors as
// base + lane*step while two whole vectors remain, then the scalar formula for the tail; this
// reproduces that so the codebooks built from it match the reference bit for bit.
std::vector<float> torch_linspace_f32(float start, float end, std::int64_t steps) {
  std::vector<float> out(static_cast<std::size_t>(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const std::int64_t halfway = steps / 2;
  // Rounded as torch 1.13's AVX2/AVX-512 kernel rounds them (checked against torch.linspace on
  // this project's machine): the scalar formula with one FMA, the lanes as a product then a sum.
  // This file is built with -ffp-contract=off, so -march cannot change that: an x86-64 build
  // used to write 12 dynamic-map entries 1-2 ulp off the FMA builds' (and torch's).
  auto scalar = [&](std::int64_t i) {
    if (i < halfway) return std::fma(step, static_cast<float>(i), start);
    return std::fma(-step, static_cast<float>(steps - i - 1), end);
  };
  constexpr std::int64_t kLanes = 8;
  std::int64_t idx = 0;
  while (idx + 2 * kLanes <= steps) {
    for (int v = 0; v < 2; ++v) {
      const float base = scalar(idx);
      for (std::int64_t lane = 0; lane < kLanes; ++lane)
        out[static_cast<std::size_t>(idx + lane)] = base + static_cast<float>(lane) * step;
      idx += kLanes;
    }
  }
  for (; idx < steps; ++idx)
    out[static_cast<std::size_t>(idx)] = scalar(idx);
  return out;
}

void check_bits(int bits, int lo, int hi, const char* what) {
  if (bits < lo || bits > hi)
    fail(ErrorKind::Usage, std::string(what) + ": " + std::to_string(bits) +
                               " bits is out of range " + std::to_string(lo) + ".." +
                               std::to_string(hi));
}

}  // namespace

std::span<const float, 16> nf4_table() {
  return std::span<const float, 16>(kNf4);
}

std::span<const float, 16> fp4_table() {
  return std::span<const float, 16>(kFp4);
}

void encode_fp4(const float* x, std::size_t n, float inv, std::uint8_t* codes, float* levels,
                SimdPath path) {
  const simd::Kernels* k = simd::kernels_for(path);
  const std::size_t done = k ? k->encode_fp4(x, n, inv, kFp4Thresholds.data(),
                                             kFp4CodeOfRank.data(), kFp4.data(), codes, levels)
                             : 0;
  for (std::size_t i = done; i < n; ++i) {
    const float v = x[i] * inv;
    const float a = std::fabs(v);
    int rank = 0;
    for (const float t : kFp4Thresholds)
      rank += a > t ? 1 : 0;
    const auto code =
        static_cast<std::uint8_t>(kFp4CodeOfRank[static_cast<std::size_t>(rank)] | (v < 0 ? 8 : 0));
    codes[i] = code;
    if (levels) levels[i] = kFp4[code];
  }
}

double normal_cdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double normal_ppf(double p) {
  if (!(p > 0.0 && p < 1.0)) {
    if (p == 0.0) return -INFINITY;
    if (p == 1.0) return INFINITY;
    return NAN;
  }
  // Acklam's coefficients (relative error 1.15e-9), then one Halley step.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double plow = 0.02425, phigh = 1 - plow;
  double x;
  if (p < plow) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= phigh) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  // Halley refinement: the CDF residual through erfc keeps full precision in both tails.
  for (int it = 0; it < 2; ++it) {
    const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
    const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
    x = x - u / (1 + x * u / 2);
  }
  return x;
}

std::vector<float> normal_float_levels(int bits) {
  check_bits(bits, 2, 8, "NF codebook");
  const std::int64_t half = std::int64_t{1} << (bits - 1);
  const float off = static_cast<float>(kNfOffset);
  std::vector<float> v;
  const auto pos = torch_linspace_f32(off, 0.5f, half + 1);
  for (std::int64_t i = 0; i < half; ++i)
    v.push_back(static_cast<float>(normal_ppf(pos[static_cast<std::size_t>(i)])));
  const auto neg = torch_linspace_f32(off, 0.5f, half);
  for (std::int64_t i = 0; i + 1 < half; ++i)
    v.push_back(static_cast<float>(-normal_ppf(neg[static_cast<std::size_t>(i)])));
  v.push_back(0.0f);
  std::sort(v.begin(), v.end());
  const float mx = v.back();
  for (float& x : v)
    x = x / mx;
  return v;
}

std::vector<double> normal_float_levels_f64(int bits) {
  check_bits(bits, 2, 8, "NF codebook");
  const int half = 1 << (bits - 1);
  std::vector<double> v;
  for (int i = 0; i < half; ++i)
    v.push_back(normal_ppf(kNfOffset + (0.5 - kNfOffset) * i / half));
  for (int i = 0; i + 1 < half; ++i)
    v.push_back(-normal_ppf(kNfOffset + (0.5 - kNfOffset) * i / (half - 1)));
  v.push_back(0.0);
  std::sort(v.begin(), v.end());
  const double mx = v.back();
  for (double& x : v)
    x /= mx;
  return v;
}

std::vector<float> dynamic_map() {
  // signed, max_exponent_bits = 7, total_bits = 8: non_sign_bits = 7, no additional items.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const std::int64_t items = (std::int64_t{1} << i) + 1;
    const auto bounds = torch_linspace_f32(0.1f, 1.0f, items);
    const float scale = static_cast<float>(std::pow(10.0, -6 + i));
    for (std::int64_t j = 0; j + 1 < items; ++j) {
      const float mean =
          (bounds[static_cast<std::size_t>(j)] + bounds[static_cast<std::size_t>(j + 1)]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  CKPT_ASSERT(data.size() == 256);
  std::sort(data.begin(), data.end());
  return data;
}

std::vector<float> int_levels(int bits) {
  check_bits(bits, 2, 8, "INT codebook");
  const int m = (1 << (bits - 1)) - 1;
  std::vector<float> v;
  for (int k = -m; k <= m; ++k)
    v.push_back(static_cast<float>(k) / static_cast<float>(m));
  return v;
}

Codebook::Codebook(std::vector<float> levels) : levels_(std::move(levels)) {
  CKPT_ASSERT(!levels_.empty() && levels_.size() <= 256);
  CKPT_ASSERT(std::is_sorted(levels_.begin(), levels_.end()));
  for (std::size_t i = 0; i + 1 < levels_.size(); ++i)
    mids_.push_back((levels_[i] + levels_[i + 1]) * 0.5f);
  // encode_many's tables: the midpoints padded with +inf to whole runs of 16 plus one more run
  // (read when x is above them all), and the last midpoint of every run (+inf past the end).
  const std::size_t runs = (mids_.size() + 15) / 16;
  padded_mids_.assign(16 * (runs + 1), std::numeric_limits<float>::infinity());
  std::copy(mids_.begin(), mids_.end(), padded_mids_.begin());
  run_last_.fill(std::numeric_limits<float>::infinity());
  for (std::size_t k = 0; k < runs; ++k)
    run_last_[k] = padded_mids_[16 * k + 15];
  std::size_t z = 0;
  for (std::size_t i = 0; i < levels_.size(); ++i)
    if (std::fabs(levels_[i]) < std::fabs(levels_[z])) z = i;
  zero_code_ = static_cast<std::uint8_t>(z);
}

std::uint8_t Codebook::encode(float x) const {
  std::uint8_t code;
  encode_many(&x, 1, &code);
  return code;
}

void Codebook::encode_many(const float* x, std::size_t n, std::uint8_t* codes) const {
  if (padded_mids_.empty()) {  // a default-constructed codebook
    std::fill(codes, codes + n, std::uint8_t{0});
    return;
  }
  count_midpoints_below(run_last_.data(), padded_mids_.data(), x, n, codes);
}

}  // namespace ckpt::quant
