// The kernels of convert_kernels.hpp, compiled by Highway's foreach_target for AVX2, AVX-512 and
// NEON (this file is built for the architecture's baseline, as quant/simd_kernels.cpp). They are
// the branch-free element functions of dtype.cpp and the byte shuffles of io/lossless.cpp, lane
// by lane: the same integer operations, selects for the cases, and for f16's subnormal results
// the same float rounding (x·2^24 + 2^23 − 2^23).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ckptkit/core/convert_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include "ckptkit/core/simd_targets.hpp"  // before foreach_target

#include "ckptkit/core/convert_kernels.hpp"

#if CKPT_SIMD_TARGET
HWY_BEFORE_NAMESPACE();
namespace ckpt::convert {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DU32 = hn::ScalableTag<std::uint32_t>;
using DI32 = hn::RebindToSigned<DU32>;
using DF32 = hn::RebindToFloat<DU32>;
using DU16h = hn::Rebind<std::uint16_t, DU32>;  // one u16 per u32 lane
using DU8q = hn::Rebind<std::uint8_t, DU32>;    // one u8 per u32 lane
using DU16 = hn::ScalableTag<std::uint16_t>;
using DI16 = hn::RebindToSigned<DU16>;
using DU8h = hn::Rebind<std::uint8_t, DU16>;  // one u8 per u16 lane

// Unaligned loads and stores of byte buffers as wider lanes (the bytes are little-endian on
// every target here, as the scalar code reads them).
template <class D>
hn::Vec<D> load_bytes(D d, const void* p) {
  return hn::LoadU(d, static_cast<const hn::TFromD<D>*>(p));
}
template <class D>
void store_bytes(D d, hn::Vec<D> v, void* p) {
  hn::StoreU(v, d, static_cast<hn::TFromD<D>*>(p));
}

std::size_t Bf16ToF32(const std::byte* p, float* out, std::size_t n) {
  const DU32 du;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto h = hn::PromoteTo(du, load_bytes(DU16h(), p + 2 * i));
    hn::StoreU(hn::BitCast(DF32(), hn::ShiftLeft<16>(h)), DF32(), out + i);
  }
  return i;
}

std::size_t F16ToF32(const std::byte* p, float* out, std::size_t n) {
  const DU32 du;
  const DF32 df;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto h = hn::PromoteTo(du, load_bytes(DU16h(), p + 2 * i));
    const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u)));
    const auto exp = hn::And(hn::ShiftRight<10>(h), hn::Set(du, 0x1fu));
    const auto man = hn::And(h, hn::Set(du, 0x3ffu));
    const auto sub = hn::BitCast(
        du, hn::Mul(hn::ConvertTo(df, hn::BitCast(DI32(), man)), hn::Set(df, 0x1p-24f)));
    const auto normal =
        hn::Or(hn::ShiftLeft<23>(hn::Add(exp, hn::Set(du, 112u))), hn::ShiftLeft<13>(man));
    const auto special = hn::Or(hn::Set(du, 0x7f800000u), hn::ShiftLeft<13>(man));
    const auto mag = hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), sub,
                                    hn::IfThenElse(hn::Eq(exp, hn::Set(du, 31u)), special, normal));
    hn::StoreU(hn::BitCast(df, hn::Or(sign, mag)), df, out + i);
  }
  return i;
}

std::size_t F32ToBf16(const float* in, std::byte* p, std::size_t n) {
  const DU32 du;
  const DI32 di;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto u = hn::BitCast(du, hn::LoadU(DF32(), in + i));
    const auto nan_mask =
        hn::Gt(hn::BitCast(di, hn::And(u, hn::Set(du, 0x7fffffffu))), hn::Set(di, 0x7f800000));
    const auto nan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du, 0x40u));
    const auto bias =
        hn::Add(hn::Set(du, 0x7fffu), hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u)));
    const auto rounded = hn::ShiftRight<16>(hn::Add(u, bias));
    const auto r = hn::IfThenElse(hn::RebindMask(du, nan_mask), nan, rounded);
    store_bytes(DU16h(), hn::DemoteTo(DU16h(), hn::BitCast(di, r)), p + 2 * i);
  }
  return i;
}

std::size_t F32ToF16(const float* in, std::byte* p, std::size_t n) {
  const DU32 du;
  const DI32 di;
  const DF32 df;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto u = hn::BitCast(du, hn::LoadU(df, in + i));
    const auto sign = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 0x8000u));
    const auto abs = hn::And(u, hn::Set(du, 0x7fffffffu));
    const auto abs_i = hn::BitCast(di, abs);  // < 2^31: signed compares are exact
    const auto nan =
        hn::Or(hn::Set(du, 0x7e00u), hn::And(hn::ShiftRight<13>(abs), hn::Set(du, 0x3ffu)));
    const auto is_sub = hn::RebindMask(du, hn::Lt(abs_i, hn::Set(di, 0x38800000)));
    const auto scaled =
        hn::Mul(hn::BitCast(df, hn::IfThenElseZero(is_sub, abs)), hn::Set(df, 0x1p24f));
    const auto r = hn::Sub(hn::Add(scaled, hn::Set(df, 0x1p23f)), hn::Set(df, 0x1p23f));
    const auto sub = hn::BitCast(du, hn::ConvertTo(di, r));
    const auto v = hn::Sub(abs, hn::Set(du, 112u << 23));
    const auto normal = hn::ShiftRight<13>(
        hn::Add(hn::Add(v, hn::Set(du, 0xfffu)), hn::And(hn::ShiftRight<13>(v), hn::Set(du, 1u))));
    auto mag = hn::IfThenElse(is_sub, sub, normal);
    mag = hn::IfThenElse(hn::RebindMask(du, hn::Gt(abs_i, hn::Set(di, 0x477ff000 - 1))),
                         hn::Set(du, 0x7c00u), mag);
    mag = hn::IfThenElse(hn::RebindMask(du, hn::Gt(abs_i, hn::Set(di, 0x7f800000))), nan, mag);
    store_bytes(DU16h(), hn::DemoteTo(DU16h(), hn::BitCast(di, hn::Or(sign, mag))), p + 2 * i);
  }
  return i;
}

// Round to odd, as dtype.cpp's scalar f64_to_f32_odd: the nearest float f; one step toward zero
// (the magnitude bits minus one) when |f| > |d|; the lowest bit set when the result still differs
// from d; Inf and NaN (and d beyond the float range) as the plain cast. The conditions are
// computed on f64 lanes and narrowed to the f32 lanes' bit patterns (0 or all ones).
std::size_t F64ToF32Odd(const double* in, float* out, std::size_t n) {
  const hn::ScalableTag<double> dd;
  const hn::RebindToUnsigned<decltype(dd)> du64;
  const hn::Rebind<float, decltype(dd)> df;  // half as wide: one f32 per f64 lane
  const hn::RebindToUnsigned<decltype(df)> du;
  const std::size_t N = hn::Lanes(dd);
  const auto narrow_mask = [&](auto m) {
    return hn::TruncateTo(du, hn::BitCast(du64, hn::VecFromMask(dd, m)));
  };
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto d = hn::LoadU(dd, in + i);
    const auto f = hn::DemoteTo(df, d);
    const auto fd = hn::PromoteTo(dd, f);
    const auto finite = hn::IsFinite(fd);
    const auto above = hn::And(finite, hn::Gt(hn::Abs(fd), hn::Abs(d)));
    const auto u = hn::Add(hn::BitCast(du, f), narrow_mask(above));  // all ones: minus one
    const auto inexact = hn::And(finite, hn::Ne(hn::PromoteTo(dd, hn::BitCast(df, u)), d));
    const auto odd = hn::Or(u, hn::And(narrow_mask(inexact), hn::Set(du, 1u)));
    hn::StoreU(hn::BitCast(df, odd), df, out + i);
  }
  return i;
}

// bf16 u: plane 0 the exponent (u >> 7) & 0xFF, plane 1 sign + mantissa ((u >> 8) & 0x80) |
// (u & 0x7F).
std::size_t SplitBf16(const std::uint8_t* in, std::size_t count, std::uint8_t* planes) {
  const DU16 du;
  const DI16 di;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= count; i += N) {
    const auto u = load_bytes(du, in + 2 * i);
    const auto e = hn::And(hn::ShiftRight<7>(u), hn::Set(du, 0xFF));
    const auto m =
        hn::Or(hn::And(hn::ShiftRight<8>(u), hn::Set(du, 0x80)), hn::And(u, hn::Set(du, 0x7F)));
    hn::StoreU(hn::DemoteTo(DU8h(), hn::BitCast(di, e)), DU8h(), planes + i);
    hn::StoreU(hn::DemoteTo(DU8h(), hn::BitCast(di, m)), DU8h(), planes + count + i);
  }
  return i;
}

std::size_t JoinBf16(const std::uint8_t* planes, std::size_t count, std::uint8_t* out) {
  const DU16 du;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= count; i += N) {
    const auto e = hn::PromoteTo(du, hn::LoadU(DU8h(), planes + i));
    const auto m = hn::PromoteTo(du, hn::LoadU(DU8h(), planes + count + i));
    const auto u =
        hn::Or(hn::Or(hn::ShiftLeft<8>(hn::And(m, hn::Set(du, 0x80))), hn::ShiftLeft<7>(e)),
               hn::And(m, hn::Set(du, 0x7F)));
    store_bytes(du, u, out + 2 * i);
  }
  return i;
}

// f32 u: planes e = (u >> 23) & 0xFF, b1 = ((u >> 24) & 0x80) | ((u >> 16) & 0x7F),
// b2 = (u >> 8) & 0xFF, b3 = u & 0xFF.
std::size_t SplitF32(const std::uint8_t* in, std::size_t count, std::uint8_t* planes) {
  const DU32 du;
  const DI32 di;
  const std::size_t N = hn::Lanes(du);
  const auto ff = hn::Set(du, 0xFFu);
  std::size_t i = 0;
  for (; i + N <= count; i += N) {
    const auto u = load_bytes(du, in + 4 * i);
    const auto e = hn::And(hn::ShiftRight<23>(u), ff);
    const auto b1 = hn::Or(hn::And(hn::ShiftRight<24>(u), hn::Set(du, 0x80u)),
                           hn::And(hn::ShiftRight<16>(u), hn::Set(du, 0x7Fu)));
    const auto b2 = hn::And(hn::ShiftRight<8>(u), ff);
    const auto b3 = hn::And(u, ff);
    hn::StoreU(hn::DemoteTo(DU8q(), hn::BitCast(di, e)), DU8q(), planes + i);
    hn::StoreU(hn::DemoteTo(DU8q(), hn::BitCast(di, b1)), DU8q(), planes + count + i);
    hn::StoreU(hn::DemoteTo(DU8q(), hn::BitCast(di, b2)), DU8q(), planes + 2 * count + i);
    hn::StoreU(hn::DemoteTo(DU8q(), hn::BitCast(di, b3)), DU8q(), planes + 3 * count + i);
  }
  return i;
}

std::size_t JoinF32(const std::uint8_t* planes, std::size_t count, std::uint8_t* out) {
  const DU32 du;
  const std::size_t N = hn::Lanes(du);
  std::size_t i = 0;
  for (; i + N <= count; i += N) {
    const auto e = hn::PromoteTo(du, hn::LoadU(DU8q(), planes + i));
    const auto b1 = hn::PromoteTo(du, hn::LoadU(DU8q(), planes + count + i));
    const auto b2 = hn::PromoteTo(du, hn::LoadU(DU8q(), planes + 2 * count + i));
    const auto b3 = hn::PromoteTo(du, hn::LoadU(DU8q(), planes + 3 * count + i));
    const auto u =
        hn::Or(hn::Or(hn::ShiftLeft<24>(hn::And(b1, hn::Set(du, 0x80u))), hn::ShiftLeft<23>(e)),
               hn::Or(hn::ShiftLeft<16>(hn::And(b1, hn::Set(du, 0x7Fu))),
                      hn::Or(hn::ShiftLeft<8>(b2), b3)));
    store_bytes(du, u, out + 4 * i);
  }
  return i;
}

}  // namespace HWY_NAMESPACE
}  // namespace ckpt::convert
HWY_AFTER_NAMESPACE();
#endif  // a SimdPath target

#if HWY_ONCE
namespace ckpt::convert {

#define CKPT_CONVERT_KERNELS(NS)                                                    \
  static constexpr Kernels k {                                                      \
    &NS::Bf16ToF32, &NS::F16ToF32, &NS::F32ToBf16, &NS::F32ToF16, &NS::F64ToF32Odd, \
        &NS::SplitBf16, &NS::SplitF32, &NS::JoinBf16, &NS::JoinF32                  \
  }

const Kernels* kernels_for(SimdPath path) {
  CKPT_SIMD_KERNELS_FOR(path, CKPT_CONVERT_KERNELS)
}

#undef CKPT_CONVERT_KERNELS

}  // namespace ckpt::convert
#endif  // HWY_ONCE
