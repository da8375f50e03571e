#include "ckptkit/quant/nf4_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CKPT_QUANT_X86 1
#endif

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

// One kernel call's sums, per lane in float (folded into LaneSums' f64 lanes once per call).
struct RunSums {
  float se[16] = {}, sx[16] = {};
  float max_abs = 0;
  // x against its level times s in lane j: the float operations the AVX-512 kernel does per lane.
  void add(int j, float x, float level, float s) {
    const float e = x - level * s;  // the float product dequantize() computes
    se[j] = std::fma(e, e, se[j]);
    sx[j] = std::fma(x, x, sx[j]);
    max_abs = std::max(max_abs, std::fabs(e));
  }
};

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
      if constexpr (kErr) r.add(static_cast<int>(j), xv, book.levels[code], s);
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

#ifdef CKPT_QUANT_X86
// GCC 12 reports its own `__m512 __Y = __Y` idiom (_mm512_undefined_*) as maybe-uninitialized
// when the intrinsics are used under a target attribute rather than -mavx512f.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CKPT_AVX512 __attribute__((target("avx512f")))

CKPT_AVX512 inline __m512 load16(F32In x, std::int64_t i) {
  return _mm512_loadu_ps(x.p + i);
}
CKPT_AVX512 inline __m512 load16(Bf16In x, std::int64_t i) {  // bf16 -> f32: the bits << 16
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.p + 2 * i));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// 16 values per step: the count of midpoints below v by a 4-step binary search through a
// register (mids[c + step - 1] < v, so the same count as the portable loop); the levels by the
// same permute; two codes per byte through 16-bit lanes. AVX-512F only (no DQ/BW), so the
// target attribute alone makes it compile on any x86-64 build.
template <bool kErr, class In>
CKPT_AVX512 void encode_pack_avx512(const Book16& book, In x, std::int64_t n, float inv, float s,
                                    std::uint8_t* out, RunSums& r) {
  const __m512 mids = _mm512_loadu_ps(book.mids), levels = _mm512_loadu_ps(book.levels);
  const __m512 vinv = _mm512_set1_ps(inv), vs = _mm512_set1_ps(s);
  const __m512i one = _mm512_set1_epi32(1), three = _mm512_set1_epi32(3),
                seven = _mm512_set1_epi32(7), two = _mm512_set1_epi32(2),
                four = _mm512_set1_epi32(4), eight = _mm512_set1_epi32(8);
  const __m128i low_byte = _mm_set1_epi16(0x00FF);
  __m512 se = _mm512_setzero_ps(), sx = se, mx = se;
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = load16(x, i);
    const __m512 v = _mm512_mul_ps(xv, vinv);
    __m512i c = _mm512_setzero_si512();
    __mmask16 m = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(seven, mids), _CMP_GT_OQ);
    c = _mm512_mask_add_epi32(c, m, c, eight);
    m = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(_mm512_add_epi32(c, three), mids), _CMP_GT_OQ);
    c = _mm512_mask_add_epi32(c, m, c, four);
    m = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(_mm512_add_epi32(c, one), mids), _CMP_GT_OQ);
    c = _mm512_mask_add_epi32(c, m, c, two);
    m = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(c, mids), _CMP_GT_OQ);
    c = _mm512_mask_add_epi32(c, m, c, one);
    // 16-bit lane j holds codes 2j (low byte) and 2j+1: byte = code[2j] << 4 | code[2j+1].
    const __m128i b = _mm512_cvtepi32_epi8(c);
    const __m128i w =
        _mm_or_si128(_mm_and_si128(_mm_slli_epi16(b, 4), low_byte), _mm_srli_epi16(b, 8));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i / 2), _mm_packus_epi16(w, w));
    if constexpr (kErr) {
      const __m512 e = _mm512_sub_ps(xv, _mm512_mul_ps(_mm512_permutexvar_ps(c, levels), vs));
      se = _mm512_fmadd_ps(e, e, se);
      sx = _mm512_fmadd_ps(xv, xv, sx);
      mx = _mm512_max_ps(mx, _mm512_abs_ps(e));
    }
  }
  if constexpr (kErr) {
    _mm512_storeu_ps(r.se, se), _mm512_storeu_ps(r.sx, sx);
    r.max_abs = _mm512_reduce_max_ps(mx);
  }
  // The tail starts at a multiple of 16, so its lanes line up with the portable kernel's.
  if (i < n) encode_pack_portable<kErr>(book, x + i, n - i, inv, s, out + i / 2, r);
}

#undef CKPT_AVX512

// 16 magnitudes per step (15 low bits as unsigned 16-bit integers), reduced per block with
// minpos on the complement.
__attribute__((target("avx2"))) void bf16_block_absmax_avx2(Bf16In x, std::int64_t n,
                                                            std::int64_t block, float* out) {
  const __m256i magnitude = _mm256_set1_epi16(0x7FFF);
  const __m128i ones = _mm_set1_epi16(-1);
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b) {
    const std::int64_t cnt = std::min(block, n - lo);
    __m256i acc = _mm256_setzero_si256();
    std::int64_t i = 0;
    for (; i + 16 <= cnt; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.p + 2 * (lo + i)));
      acc = _mm256_max_epu16(acc, _mm256_and_si256(h, magnitude));
    }
    const __m128i m = _mm_max_epu16(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    const auto top = static_cast<std::uint16_t>(
        ~_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(m, ones))) & 0xFFFF);
    out[b] = bf16_to_f32(std::max(top, max_magnitude(x + (lo + i), cnt - i)));
  }
}

__attribute__((target("avx512f,popcnt"))) void count_midpoints_below_avx512(const float* run_last,
                                                                            const float* padded,
                                                                            const float* x,
                                                                            std::size_t n,
                                                                            std::uint8_t* codes) {
  const __m512 last = _mm512_loadu_ps(run_last);
  for (std::size_t i = 0; i < n; ++i) {
    const __m512 v = _mm512_set1_ps(x[i]);
    const unsigned runs = std::popcount(unsigned{_mm512_cmp_ps_mask(last, v, _CMP_LT_OQ)});
    const __m512 run = _mm512_loadu_ps(padded + 16 * runs);
    const unsigned below = std::popcount(unsigned{_mm512_cmp_ps_mask(run, v, _CMP_LT_OQ)});
    codes[i] = static_cast<std::uint8_t>(16 * runs + below);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

template <bool kErr, class In>
void encode_pack_run(const Book16& book, In x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, RunSums& r, bool avx512) {
#ifdef CKPT_QUANT_X86
  if (avx512) return encode_pack_avx512<kErr>(book, x, n, inv, s, out, r);
#endif
  encode_pack_portable<kErr>(book, x, n, inv, s, out, r);
}

// One block through the chosen kernel; with `err`, its float sums folded into err's lanes.
template <class In>
void encode_pack(const Book16& book, In x, std::int64_t n, float inv, float s, std::uint8_t* out,
                 LaneSums* err, bool avx512) {
  RunSums r;
  if (!err) return encode_pack_run<false>(book, x, n, inv, s, out, r, avx512);
  encode_pack_run<true>(book, x, n, inv, s, out, r, avx512);
  err->fold(r.se, r.sx, r.max_abs);
}

}  // namespace

void LaneSums::add(const float* x, const float* y, float s, std::int64_t n) {
  RunSums r;
  for (std::int64_t i = 0; i < n; ++i)
    r.add(static_cast<int>(i % 16), x[i], y[i], s);
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

bool nf4_kernel_is_avx512() {
#ifdef CKPT_QUANT_X86
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

void encode_pack_nf4_portable(const Book16& book, const float* x, std::int64_t n, float inv,
                              float s, std::uint8_t* out, LaneSums* err) {
  encode_pack(book, F32In{x}, n, inv, s, out, err, false);
}

void encode_pack_nf4_bf16_portable(const Book16& book, const std::byte* x, std::int64_t n,
                                   float inv, float s, std::uint8_t* out, LaneSums* err) {
  encode_pack(book, Bf16In{x}, n, inv, s, out, err, false);
}

void encode_pack_nf4(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, LaneSums* err) {
  encode_pack(book, F32In{x}, n, inv, s, out, err, nf4_kernel_is_avx512());
}

void encode_pack_nf4_bf16(const Book16& book, const std::byte* x, std::int64_t n, float inv,
                          float s, std::uint8_t* out, LaneSums* err) {
  encode_pack(book, Bf16In{x}, n, inv, s, out, err, nf4_kernel_is_avx512());
}

void count_midpoints_below_portable(const float* run_last, const float* padded, const float* x,
                                    std::size_t n, std::uint8_t* codes) {
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

void count_midpoints_below(const float* run_last, const float* padded, const float* x,
                           std::size_t n, std::uint8_t* codes) {
#ifdef CKPT_QUANT_X86
  if (nf4_kernel_is_avx512()) return count_midpoints_below_avx512(run_last, padded, x, n, codes);
#endif
  count_midpoints_below_portable(run_last, padded, x, n, codes);
}

void bf16_block_absmax_portable(const std::byte* x, std::int64_t n, std::int64_t block,
                                float* out) {
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b)
    out[b] = bf16_to_f32(max_magnitude(Bf16In{x} + lo, std::min(block, n - lo)));
}

void bf16_block_absmax(const std::byte* x, std::int64_t n, std::int64_t block, float* out) {
#ifdef CKPT_QUANT_X86
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return bf16_block_absmax_avx2(Bf16In{x}, n, block, out);
#endif
  bf16_block_absmax_portable(x, n, block, out);
}

}  // namespace ckpt::quant
