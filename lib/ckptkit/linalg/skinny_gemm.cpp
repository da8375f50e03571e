// The kernels of skinny_gemm.hpp, compiled by Highway's foreach_target for AVX2, AVX-512 and NEON
// (this file is built for the architecture's baseline, as quant/simd_kernels.cpp), and the scalar
// reference. Register blocks: R rows of the output × CV vectors of columns, held in registers
// while the inner index runs; b's row (CV vectors) is loaded once per step and each of the R
// entries of a is broadcast. R and CV fit each target's register file (16 ymm on AVX2, 32 on
// AVX-512 and NEON) and were measured on Llama-7B shapes (docs/bench-svd-init.md).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ckptkit/linalg/skinny_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include "ckptkit/core/simd_targets.hpp"  // before foreach_target

#include <algorithm>
#include <cmath>

#include "ckptkit/core/error.hpp"
#include "ckptkit/linalg/skinny_gemm.hpp"

#if CKPT_SIMD_TARGET
HWY_BEFORE_NAMESPACE();
namespace ckpt::skinny {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr std::int64_t kN = HWY_LANES(float);
#if HWY_TARGET == HWY_AVX2
constexpr int kRows = 3, kVecs = 4;  // 12 accumulators + 4 of b: the 16 ymm registers
#elif HWY_TARGET == HWY_AVX3
constexpr int kRows = 8, kVecs = 2;  // 16 + 2 of 32 zmm
#else
constexpr int kRows = 4, kVecs = 4;  // 16 + 4 of 32 NEON registers
#endif
constexpr std::int64_t kInnerBytes = 256 * 1024;

// Rows [i0, i0 + R) of y, column vectors [0, CV) at b and y (already offset to the chunk).
template <int R, int CV>
void nn_block(const float* a, std::int64_t lda, std::int64_t inner, const float* b, std::int64_t ld,
              float* y, bool accumulate) {
  const DF d;
  VF acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v)
      acc[r][v] = accumulate ? hn::LoadU(d, y + r * ld + v * kN) : hn::Zero(d);
  for (std::int64_t k = 0; k < inner; ++k) {
    VF bv[CV];
    for (int v = 0; v < CV; ++v)
      bv[v] = hn::LoadU(d, b + k * ld + v * kN);
    for (int r = 0; r < R; ++r) {
      const VF av = hn::Set(d, a[r * lda + k]);
      for (int v = 0; v < CV; ++v)
        acc[r][v] = hn::MulAdd(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v)
      hn::StoreU(acc[r][v], d, y + r * ld + v * kN);
}

// All output rows for one chunk of CV column vectors: whole blocks of kRows, then single rows.
template <int CV>
void nn_chunk(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t inner,
              const float* b, std::int64_t ld, float* y, bool accumulate) {
  std::int64_t i = 0;
  for (; i + kRows <= rows; i += kRows)
    nn_block<kRows, CV>(a + i * lda, lda, inner, b, ld, y + i * ld, accumulate);
  for (; i < rows; ++i)
    nn_block<1, CV>(a + i * lda, lda, inner, b, ld, y + i * ld, accumulate);
}

// Calls f.template operator()<CV>(column offset) for chunks of kVecs vectors covering l columns.
template <class F>
void for_chunks(std::int64_t l, F&& f) {
  const std::int64_t vecs = (l + kN - 1) / kN;
  for (std::int64_t v0 = 0; v0 < vecs; v0 += kVecs) {
    const std::int64_t c0 = v0 * kN;
    switch (std::min<std::int64_t>(kVecs, vecs - v0)) {
      case 1:
        f.template operator()<1>(c0);
        break;
      case 2:
        f.template operator()<2>(c0);
        break;
      case 3:
        if constexpr (kVecs >= 3) f.template operator()<3>(c0);
        break;
      default:
        if constexpr (kVecs >= 4) f.template operator()<4>(c0);
        break;
    }
  }
}

// b is read whole for every kRows rows of y: a long inner dimension is cut into steps whose part
// of b stays in L2. y carries the sum from one step to the next, so the chain is unchanged.
void Nn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t inner, const float* b,
        std::int64_t l, std::int64_t ld, float* y, bool accumulate) {
  const std::int64_t step = std::max<std::int64_t>(kInnerBytes / (ld * 4), 1);
  for (std::int64_t k0 = 0; k0 == 0 || k0 < inner; k0 += step) {  // once when inner is 0
    const std::int64_t len = std::min(step, inner - k0);
    for_chunks(l, [&]<int CV>(std::int64_t c0) {
      nn_chunk<CV>(a + k0, lda, rows, len, b + k0 * ld + c0, ld, y + c0, accumulate || k0 > 0);
    });
  }
}

// Rows [k0, k0 + R) of y += Aᵀ·B: y's row k sums a[i][k] · b[i] over i (a offset to column k0).
template <int R, int CV>
void tn_block(const float* a, std::int64_t lda, std::int64_t rows, const float* b, std::int64_t ld,
              float* y) {
  const DF d;
  VF acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v)
      acc[r][v] = hn::LoadU(d, y + r * ld + v * kN);
  for (std::int64_t i = 0; i < rows; ++i) {
    VF bv[CV];
    for (int v = 0; v < CV; ++v)
      bv[v] = hn::LoadU(d, b + i * ld + v * kN);
    for (int r = 0; r < R; ++r) {
      const VF av = hn::Set(d, a[i * lda + r]);
      for (int v = 0; v < CV; ++v)
        acc[r][v] = hn::MulAdd(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v)
      hn::StoreU(acc[r][v], d, y + r * ld + v * kN);
}

template <int CV>
void tn_chunk(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t cols,
              const float* b, std::int64_t ld, float* y) {
  std::int64_t k = 0;
  for (; k + kRows <= cols; k += kRows)
    tn_block<kRows, CV>(a + k, lda, rows, b, ld, y + k * ld);
  for (; k < cols; ++k)
    tn_block<1, CV>(a + k, lda, rows, b, ld, y + k * ld);
}

void Tn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t cols, const float* b,
        std::int64_t l, std::int64_t ld, float* y) {
  for_chunks(
      l, [&]<int CV>(std::int64_t c0) { tn_chunk<CV>(a, lda, rows, cols, b + c0, ld, y + c0); });
}

}  // namespace HWY_NAMESPACE
}  // namespace ckpt::skinny
HWY_AFTER_NAMESPACE();
#endif  // a SimdPath target

#if HWY_ONCE
namespace ckpt {
namespace {

using NnFn = void (*)(const float*, std::int64_t, std::int64_t, std::int64_t, const float*,
                      std::int64_t, std::int64_t, float*, bool);
using TnFn = void (*)(const float*, std::int64_t, std::int64_t, std::int64_t, const float*,
                      std::int64_t, std::int64_t, float*);
struct Kernels {
  NnFn nn;
  TnFn tn;
};

#define CKPT_SKINNY_KERNELS(NS)      \
  static constexpr Kernels k {       \
    &skinny::NS::Nn, &skinny::NS::Tn \
  }

const Kernels* kernels_for(SimdPath path) {
  CKPT_SIMD_KERNELS_FOR(path, CKPT_SKINNY_KERNELS)
}

#undef CKPT_SKINNY_KERNELS

}  // namespace

std::int64_t skinny_stride(std::int64_t l) {
  return (l + 15) / 16 * 16;
}

void skinny_nn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t inner,
               const float* b, std::int64_t l, std::int64_t ld, float* y, bool accumulate,
               SimdPath path) {
  if (const Kernels* k = kernels_for(path))
    return k->nn(a, lda, rows, inner, b, l, ld, y, accumulate);
  CKPT_ASSERT(path == SimdPath::Scalar);  // every other available path has kernels here
  for (std::int64_t i = 0; i < rows; ++i) {
    float* yi = y + i * ld;
    if (!accumulate) std::fill(yi, yi + l, 0.0f);
    for (std::int64_t k = 0; k < inner; ++k) {
      const float aik = a[i * lda + k];
      const float* bk = b + k * ld;
      for (std::int64_t c = 0; c < l; ++c)
        yi[c] = std::fma(aik, bk[c], yi[c]);
    }
  }
}

void skinny_tn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t cols,
               const float* b, std::int64_t l, std::int64_t ld, float* y, SimdPath path) {
  if (const Kernels* k = kernels_for(path)) return k->tn(a, lda, rows, cols, b, l, ld, y);
  CKPT_ASSERT(path == SimdPath::Scalar);
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* bi = b + i * ld;
    for (std::int64_t k = 0; k < cols; ++k) {
      const float aik = a[i * lda + k];
      float* yk = y + k * ld;
      for (std::int64_t c = 0; c < l; ++c)
        yk[c] = std::fma(aik, bi[c], yk[c]);
    }
  }
}

}  // namespace ckpt
#endif  // HWY_ONCE
