// The kernels of residual_stats.hpp, compiled by Highway's foreach_target for AVX2, AVX-512 and
// NEON (built for the architecture's baseline, as the other kernel files), and the scalar
// reference. Lane l of a group of 8 is lane l % N of vector l / N (N doubles per vector).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ckptkit/decompose/residual_stats.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include "ckptkit/core/simd_targets.hpp"  // before foreach_target

#include "ckptkit/decompose/residual_stats.hpp"

#if CKPT_SIMD_TARGET
HWY_BEFORE_NAMESPACE();
namespace ckpt::residual {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DD = hn::ScalableTag<double>;
using DF = hn::Rebind<float, DD>;  // one f32 per f64 lane
using DI = hn::Rebind<std::int32_t, DD>;
using DI64 = hn::RebindToSigned<DD>;
using DU64 = hn::RebindToUnsigned<DD>;
constexpr std::size_t kN = HWY_LANES(double);  // fixed-width targets only (no SVE)
constexpr std::size_t kParts = kLanes / kN;
static_assert(kN <= kLanes && kLanes % kN == 0);

/// std::max(a, b) exactly: b only when b > a (a NaN b never wins).
template <class V>
HWY_INLINE V max_like_std(V a, V b) {
  return hn::IfThenElse(hn::Gt(b, a), b, a);
}

/// 1 / ulp(v) as f64: 2^(mant − e) built from the exponent bits, as the scalar inv_ulp.
HWY_INLINE hn::Vec<DD> inv_ulp(hn::Vec<DF> v, UlpFormat f) {
  const DI di;
  const auto bits = hn::BitCast(di, v);
  const auto e =
      hn::Max(hn::Sub(hn::And(hn::ShiftRight<23>(bits), hn::Set(di, 0xff)), hn::Set(di, 127)),
              hn::Set(di, f.emin));
  const auto biased = hn::PromoteTo(DI64(), hn::Sub(hn::Set(di, f.mant + 1023), e));
  return hn::BitCast(DD(), hn::ShiftLeft<52>(biased));
}

std::size_t CastStats(const float* x, const float* stored, const float* w, std::size_t n,
                      UlpFormat ulp, LaneStats& s) {
  const DD dd;
  const DF df;
  const DU64 du;
  hn::Vec<DD> sq[kParts], max_ulps[kParts], max_res[kParts];
  hn::Vec<DF> max_abs[kParts];
  hn::Vec<DU64> within[kParts];
  for (std::size_t k = 0; k < kParts; ++k) {
    sq[k] = hn::LoadU(dd, s.sq + k * kN);
    max_abs[k] = hn::LoadU(df, s.max_abs + k * kN);
    max_ulps[k] = hn::LoadU(dd, s.max_ulps + k * kN);
    max_res[k] = hn::LoadU(dd, s.max_res_ulps + k * kN);
    within[k] = hn::LoadU(du, s.within + k * kN);
  }
  const auto one = hn::Set(dd, 1.0);
  std::size_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (std::size_t k = 0; k < kParts; ++k) {
      const std::size_t at = j + k * kN;
      const auto xf = hn::LoadU(df, x + at);
      const auto sf = hn::LoadU(df, stored + at);
      const auto e = hn::Abs(hn::Sub(sf, xf));  // exact: stored is x with fewer bits
      const auto xd = hn::PromoteTo(dd, xf), ed = hn::PromoteTo(dd, e);
      sq[k] = hn::MulAdd(xd, xd, sq[k]);  // the product is exact in f64: one rounding either way
      max_abs[k] = max_like_std(max_abs[k], e);
      const auto u = hn::Mul(ed, inv_ulp(hn::LoadU(df, w + at), ulp));
      max_ulps[k] = max_like_std(max_ulps[k], u);
      within[k] = hn::Sub(within[k], hn::BitCast(du, hn::VecFromMask(dd, hn::Le(u, one))));
      max_res[k] = max_like_std(max_res[k], hn::Mul(ed, inv_ulp(sf, ulp)));
    }
  for (std::size_t k = 0; k < kParts; ++k) {
    hn::StoreU(sq[k], dd, s.sq + k * kN);
    hn::StoreU(max_abs[k], df, s.max_abs + k * kN);
    hn::StoreU(max_ulps[k], dd, s.max_ulps + k * kN);
    hn::StoreU(max_res[k], dd, s.max_res_ulps + k * kN);
    hn::StoreU(within[k], du, s.within + k * kN);
  }
  return j;
}

}  // namespace HWY_NAMESPACE
}  // namespace ckpt::residual
HWY_AFTER_NAMESPACE();
#endif  // a SimdPath target

#if HWY_ONCE
#include <algorithm>
#include <bit>
#include <cmath>

namespace ckpt::residual {

#define CKPT_RESIDUAL_KERNELS(NS) \
  static constexpr Kernels k {    \
    &NS::CastStats                \
  }

const Kernels* kernels_for(SimdPath path){CKPT_SIMD_KERNELS_FOR(path, CKPT_RESIDUAL_KERNELS)}
#undef CKPT_RESIDUAL_KERNELS

UlpFormat UlpFormat::of(DType t) {
  return {t == DType::BF16  ? 7
          : t == DType::F16 ? 10
          : t == DType::F64 ? 52
                            : 23,
          t == DType::F16 ? -14 : -126};
}

namespace {

/// 1 / ulp(v): a power of two, so e · inv is exactly e / ulp.
double inv_ulp(float v, UlpFormat f) {
  const int e =
      std::max(static_cast<int>((std::bit_cast<std::uint32_t>(v) >> 23) & 0xffu) - 127, f.emin);
  return std::bit_cast<double>(static_cast<std::uint64_t>(f.mant - e + 1023) << 52);
}

}  // namespace

void add_cast_stats(const float* x, const float* stored, const float* w, std::size_t n,
                    UlpFormat ulp, LaneStats& s, SimdPath path) {
  const Kernels* k = kernels_for(path);
  const std::size_t done = k ? k->cast_stats(x, stored, w, n, ulp, s) : 0;
  for (std::size_t j = done; j < n; ++j) {
    const std::size_t l = j % kLanes;
    const float e = std::fabs(stored[j] - x[j]);  // exact: stored is x with fewer bits
    s.sq[l] += static_cast<double>(x[j]) * x[j];
    s.max_abs[l] = std::max(s.max_abs[l], e);
    const double u = static_cast<double>(e) * inv_ulp(w[j], ulp);
    s.max_ulps[l] = std::max(s.max_ulps[l], u);
    s.within[l] += u <= 1.0 ? 1u : 0u;
    s.max_res_ulps[l] =
        std::max(s.max_res_ulps[l], static_cast<double>(e) * inv_ulp(stored[j], ulp));
  }
}

}  // namespace ckpt::residual
#endif  // HWY_ONCE
