#include "ckptkit/quant/nf4_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"

#include "ckptkit/quant/simd_kernels.hpp"

namespace ckpt::quant {
namespace {

// Inputs as the kernels read them: x[i] as float, and the input advanced by k elements.
struct F32In {
  const float* p;
  float operator[](std::int64_t i) const { return p[i]; }
  F32In operator+(std::int64_t k) const { return {p + k}; }
};
struct Bf16In {
  const std::byte* p;
  float operator[](std::int64_t i) const { return bf16_to_f32(half(i)); }
  std::uint16_t half(std::int64_t i) const {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return h;
  }
  Bf16In operator+(std::int64_t k) const { return {p + 2 * k}; }
};

using simd::RunSums;

// x against its level times s in lane j: the float operations the vector kernels do per lane.
void add_to_lane(RunSums& r, int j, float x, float level, float s) {
  const float e = x - level * s;  // the float product dequantize() computes
  r.se[j] = std::fma(e, e, r.se[j]);
  r.sx[j] = std::fma(x, x, r.sx[j]);
  r.max_abs = std::max(r.max_abs, std::fabs(e));
}

template <bool kErr, class In>
void encode_pack_portable(const Book16& book, In x, std::int64_t n, float inv, float s,
                          std::uint8_t* out, RunSums& r) {
  for (std::int64_t i0 = 0; i0 < n; i0 += 16) {
    const std::int64_t k = std::min<std::int64_t>(16, n - i0);
    std::uint8_t c[16];
    for (std::int64_t j = 0; j < k; ++j) {
      const float xv = x[i0 + j];
      const float v = xv * inv;
      int code = 0;
      for (int m = 0; m < 15; ++m)
        code += v > book.mids[m] ? 1 : 0;
      c[j] = static_cast<std::uint8_t>(code);
      if constexpr (kErr) add_to_lane(r, static_cast<int>(j), xv, book.levels[code], s);
    }
    std::int64_t j = 0;
    for (; j + 1 < k; j += 2)
      out[(i0 + j) / 2] = static_cast<std::uint8_t>((c[j] << 4) | c[j + 1]);
    if (j < k) out[(i0 + j) / 2] = static_cast<std::uint8_t>(c[j] << 4);
  }
}

std::uint16_t max_magnitude(Bf16In x, std::int64_t n) {
  std::uint16_t m = 0;
  for (std::int64_t i = 0; i < n; ++i)
    m = std::max<std::uint16_t>(m, x.half(i) & 0x7FFF);
  return m;
}

// The whole groups of 16 on the vector path, the tail (from a multiple of 16, so its lanes line
// up) on the portable one.
template <bool kErr, class In>
void encode_pack_run(const Book16& book, In x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, RunSums& r, const simd::Kernels* k) {
  std::int64_t done = 0;
  if (k) {
    if constexpr (std::is_same_v<In, F32In>)
      done = k->encode_f32(book, x.p, n, inv, s, out, kErr ? &r : nullptr);
    else
      done = k->encode_bf16(book, x.p, n, inv, s, out, kErr ? &r : nullptr);
  }
  if (done < n) encode_pack_portable<kErr>(book, x + done, n - done, inv, s, out + done / 2, r);
}

// One block through the chosen kernel; with `err`, its float sums folded into err's lanes.
template <class In>
void encode_pack(const Book16& book, In x, std::int64_t n, float inv, float s, std::uint8_t* out,
                 LaneSums* err, SimdPath path) {
  const simd::Kernels* k = simd::kernels_for(path);
  RunSums r;
  if (!err) return encode_pack_run<false>(book, x, n, inv, s, out, r, k);
  encode_pack_run<true>(book, x, n, inv, s, out, r, k);
  err->fold(r.se, r.sx, r.max_abs);
}

// Whole blocks on the vector path in one call, a shorter last block (or every block, on the
// scalar path) one call each.
template <class In>
void encode_pack_blocks(const Book16& book, In x, std::int64_t n, std::int64_t block,
                        const float* inv, const float* s, std::uint8_t* out, LaneSums* err,
                        SimdPath path) {
  CKPT_ASSERT(block > 0 && block % 16 == 0);
  std::int64_t b = 0;
  if (const simd::Kernels* k = simd::kernels_for(path); k && n >= block) {
    b = n / block;
    if constexpr (std::is_same_v<In, F32In>)
      k->encode_blocks_f32(book, x.p, b, block, inv, s, out, err);
    else
      k->encode_blocks_bf16(book, x.p, b, block, inv, s, out, err);
  }
  for (; b * block < n; ++b)
    encode_pack(book, x + b * block, std::min(block, n - b * block), inv[b], err ? s[b] : 0.0f,
                out + b * block / 2, err, path);
}

}  // namespace

void LaneSums::add(const float* x, const float* y, float s, std::int64_t n) {
  RunSums r;
  for (std::int64_t i = 0; i < n; ++i)
    add_to_lane(r, static_cast<int>(i % 16), x[i], y[i], s);
  fold(r.se, r.sx, r.max_abs);
}

void LaneSums::fold(const float* se_run, const float* sx_run, float max_run) {
  for (int j = 0; j < 16; ++j) {
    se[j] += se_run[j];
    sx[j] += sx_run[j];
  }
  max_abs = std::max(max_abs, static_cast<double>(max_run));
}

double LaneSums::sum_se() const {
  double t = 0;
  for (double v : se)
    t += v;
  return t;
}

double LaneSums::sum_sx() const {
  double t = 0;
  for (double v : sx)
    t += v;
  return t;
}

Book16::Book16(std::span<const float> lv, std::span<const float> m) {
  CKPT_ASSERT(lv.size() == 16 && m.size() == 15);
  std::copy(lv.begin(), lv.end(), levels);
  std::copy(m.begin(), m.end(), mids);
  mids[15] = std::numeric_limits<float>::infinity();  // never below a finite value
}

void encode_pack_nf4(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, LaneSums* err, SimdPath path) {
  encode_pack(book, F32In{x}, n, inv, s, out, err, path);
}

void encode_pack_nf4_bf16(const Book16& book, const std::byte* x, std::int64_t n, float inv,
                          float s, std::uint8_t* out, LaneSums* err, SimdPath path) {
  encode_pack(book, Bf16In{x}, n, inv, s, out, err, path);
}

void encode_pack_nf4_blocks(const Book16& book, const float* x, std::int64_t n, std::int64_t block,
                            const float* inv, const float* s, std::uint8_t* out, LaneSums* err,
                            SimdPath path) {
  encode_pack_blocks(book, F32In{x}, n, block, inv, s, out, err, path);
}

void encode_pack_nf4_blocks_bf16(const Book16& book, const std::byte* x, std::int64_t n,
                                 std::int64_t block, const float* inv, const float* s,
                                 std::uint8_t* out, LaneSums* err, SimdPath path) {
  encode_pack_blocks(book, Bf16In{x}, n, block, inv, s, out, err, path);
}

void count_midpoints_below(const float* run_last, const float* padded, const float* x,
                           std::size_t n, std::uint8_t* codes, SimdPath path) {
  if (const simd::Kernels* k = simd::kernels_for(path))
    return k->count_below(run_last, padded, x, n, codes);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    unsigned runs = 0, below = 0;
    for (int k = 0; k < 16; ++k)
      runs += run_last[k] < v ? 1u : 0u;
    for (int j = 0; j < 16; ++j)
      below += padded[16 * runs + j] < v ? 1u : 0u;
    codes[i] = static_cast<std::uint8_t>(16 * runs + below);
  }
}

void f32_block_absmax(const float* x, std::int64_t n, std::int64_t block, float* out,
                      SimdPath path) {
  if (const simd::Kernels* k = simd::kernels_for(path)) return k->f32_absmax(x, n, block, out);
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b) {
    std::uint32_t top = 0;
    for (std::int64_t i = lo; i < std::min(lo + block, n); ++i)
      top = std::max(top, std::bit_cast<std::uint32_t>(x[i]) & 0x7FFFFFFFu);
    out[b] = std::bit_cast<float>(top);
  }
}

void dequantize16(const std::uint8_t* packed, std::int64_t n, float s, const float* levels,
                  float* out, SimdPath path) {
  const simd::Kernels* k = simd::kernels_for(path);
  std::int64_t i = k ? k->dequant16(packed, n, s, levels, out) : 0;  // even: whole bytes
  for (; i + 1 < n; i += 2) {
    out[i] = levels[packed[i / 2] >> 4] * s;
    out[i + 1] = levels[packed[i / 2] & 0x0F] * s;
  }
  if (i < n) out[i] = levels[packed[i / 2] >> 4] * s;
}

void bf16_block_absmax(const std::byte* x, std::int64_t n, std::int64_t block, float* out,
                       SimdPath path) {
  if (const simd::Kernels* k = simd::kernels_for(path)) return k->bf16_absmax(x, n, block, out);
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b)
    out[b] = bf16_to_f32(max_magnitude(Bf16In{x} + lo, std::min(block, n - lo)));
}

}  // namespace ckpt::quant
