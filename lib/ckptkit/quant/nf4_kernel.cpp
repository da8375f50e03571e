#include "ckptkit/quant/nf4_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ckptkit/core/error.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CKPT_NF4_AVX512 1
#endif

namespace ckpt::quant {

void LaneSums::add(const float* x, const float* y, float s, std::int64_t n) {
  for (std::int64_t i0 = 0; i0 < n; i0 += 16) {
    const std::int64_t k = std::min<std::int64_t>(16, n - i0);
    for (std::int64_t j = 0; j < k; ++j) {
      const double xv = x[i0 + j];
      const float ys = y[i0 + j] * s;  // the float product dequantize() computes
      const double e = xv - static_cast<double>(ys);
      se[j] = std::fma(e, e, se[j]);
      sx[j] = std::fma(xv, xv, sx[j]);
      max_abs = std::max(max_abs, std::fabs(e));
    }
  }
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

void encode_pack_nf4_portable(const Book16& book, const float* x, std::int64_t n, float inv,
                              float s, std::uint8_t* out, LaneSums* err) {
  for (std::int64_t i0 = 0; i0 < n; i0 += 16) {
    const std::int64_t k = std::min<std::int64_t>(16, n - i0);
    std::uint8_t c[16];
    float y[16];
    for (std::int64_t j = 0; j < k; ++j) {
      const float v = x[i0 + j] * inv;
      int code = 0;
      for (int m = 0; m < 15; ++m)
        code += v > book.mids[m] ? 1 : 0;
      c[j] = static_cast<std::uint8_t>(code);
      y[j] = book.levels[code];
    }
    std::int64_t j = 0;
    for (; j + 1 < k; j += 2)
      out[(i0 + j) / 2] = static_cast<std::uint8_t>((c[j] << 4) | c[j + 1]);
    if (j < k) out[(i0 + j) / 2] = static_cast<std::uint8_t>(c[j] << 4);
    if (err) err->add(x + i0, y, s, k);
  }
}

#ifdef CKPT_NF4_AVX512
// GCC 12 reports its own `__m512 __Y = __Y` idiom (_mm512_undefined_*) as maybe-uninitialized
// when the intrinsics are used under a target attribute rather than -mavx512f.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace {

// 16 values per step: the count of midpoints below v by a 4-step binary search through a
// register (mids[c + step - 1] < v, so the same count as the portable loop); the levels by the
// same permute; two codes per byte through 16-bit lanes. AVX-512F only (no DQ/BW), so the
// target attribute alone makes it compile on any x86-64 build.
__attribute__((target("avx512f"))) void encode_pack_nf4_avx512(const Book16& book, const float* x,
                                                               std::int64_t n, float inv, float s,
                                                               std::uint8_t* out, LaneSums* err) {
  const __m512 mids = _mm512_loadu_ps(book.mids), levels = _mm512_loadu_ps(book.levels);
  const __m512 vinv = _mm512_set1_ps(inv), vs = _mm512_set1_ps(s);
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2),
                three = _mm512_set1_epi32(3), four = _mm512_set1_epi32(4),
                seven = _mm512_set1_epi32(7), eight = _mm512_set1_epi32(8);
  const __m128i low_byte = _mm_set1_epi16(0x00FF);
  __m512d se_lo = _mm512_setzero_pd(), se_hi = se_lo, sx_lo = se_lo, sx_hi = se_lo, mx = se_lo;
  if (err) {
    se_lo = _mm512_loadu_pd(err->se), se_hi = _mm512_loadu_pd(err->se + 8);
    sx_lo = _mm512_loadu_pd(err->sx), sx_hi = _mm512_loadu_pd(err->sx + 8);
  }
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i);
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
    if (err) {
      const __m512 ys = _mm512_mul_ps(_mm512_permutexvar_ps(c, levels), vs);
      const __m512d x_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
      const __m512d x_hi =
          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1)));
      const __m512d y_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(ys));
      const __m512d y_hi =
          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ys), 1)));
      const __m512d e_lo = _mm512_sub_pd(x_lo, y_lo), e_hi = _mm512_sub_pd(x_hi, y_hi);
      se_lo = _mm512_fmadd_pd(e_lo, e_lo, se_lo);
      se_hi = _mm512_fmadd_pd(e_hi, e_hi, se_hi);
      sx_lo = _mm512_fmadd_pd(x_lo, x_lo, sx_lo);
      sx_hi = _mm512_fmadd_pd(x_hi, x_hi, sx_hi);
      mx = _mm512_max_pd(mx, _mm512_max_pd(_mm512_abs_pd(e_lo), _mm512_abs_pd(e_hi)));
    }
  }
  if (err) {
    _mm512_storeu_pd(err->se, se_lo), _mm512_storeu_pd(err->se + 8, se_hi);
    _mm512_storeu_pd(err->sx, sx_lo), _mm512_storeu_pd(err->sx + 8, sx_hi);
    err->max_abs = std::max(err->max_abs, _mm512_reduce_max_pd(mx));
  }
  // The tail starts at a multiple of 16, so its lanes line up with the portable kernel's.
  if (i < n) encode_pack_nf4_portable(book, x + i, n - i, inv, s, out + i / 2, err);
}

}  // namespace
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

bool nf4_kernel_is_avx512() {
#ifdef CKPT_NF4_AVX512
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

void encode_pack_nf4(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                     std::uint8_t* out, LaneSums* err) {
#ifdef CKPT_NF4_AVX512
  if (nf4_kernel_is_avx512()) return encode_pack_nf4_avx512(book, x, n, inv, s, out, err);
#endif
  encode_pack_nf4_portable(book, x, n, inv, s, out, err);
}

}  // namespace ckpt::quant
