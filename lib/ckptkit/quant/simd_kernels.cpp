// The vector kernels of nf4_kernel.hpp, written once over Google Highway and compiled for every
// target by foreach_target (this file is compiled without -march=native, so the x86-64 build has
// AVX2 and AVX-512 both; aarch64 has NEON). They do exactly the portable kernels' float
// operations: one multiply for v = x·inv, comparisons for the codes, e = x - level·s as a multiply
// then a subtraction (-ffp-contract=off), fused multiply-adds for the sums (Highway's MulAdd is a
// true FMA on these targets, as std::fma in the reference), element i in lane i % 16.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ckptkit/quant/simd_kernels.cpp"
#include <hwy/foreach_target.h>           // IWYU pragma: keep
#include "ckptkit/core/simd_targets.hpp"  // before foreach_target
// foreach_target re-includes this file once per target; what follows is built each time.
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>

#include "ckptkit/quant/simd_kernels.hpp"

// Kernels only for the targets SimdPath names; foreach_target also visits the build's baseline
// (scalar), which the portable code in nf4_kernel.cpp covers.
#if CKPT_SIMD_TARGET
HWY_BEFORE_NAMESPACE();
namespace ckpt::quant::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<DI>;
constexpr std::size_t kN = HWY_LANES(float);  // fixed-width targets only (no SVE)
constexpr std::size_t kParts = 16 / kN;       // vectors per group of 16 values
static_assert(kN <= 16 && 16 % kN == 0);

/// A table of M floats (M a power of two, at most 16) in ceil(M / kN) vectors, read by a lane
/// index 0..M-1: one permute when M <= kN, a blend of permutes otherwise.
template <std::size_t M>
struct Table {
  static constexpr std::size_t kVecs = M <= kN ? 1 : M / kN;
  VF part[kVecs];
  /// t[0..M) (read with stride `stride` from `from`); lanes past M are never indexed.
  explicit Table(const float* from, std::size_t stride = 1) {
    float lanes[kVecs * kN] = {};
    for (std::size_t j = 0; j < M; ++j)
      lanes[j] = from[j * stride];
    for (std::size_t k = 0; k < kVecs; ++k)
      part[k] = hn::LoadU(DF(), lanes + k * kN);
  }
  /// t's entries times s, each one float product (built vector by vector: a copy of the
  /// struct would store it in halves and reload it whole, which stalls store forwarding).
  Table(const Table& t, VF s) {
    for (std::size_t k = 0; k < kVecs; ++k)
      part[k] = hn::Mul(t.part[k], s);
  }
  VF lookup(VI idx) const {
    const DF df;
    const DI di;
    if constexpr (kVecs == 1) return hn::TableLookupLanes(part[0], hn::IndicesFromVec(df, idx));
    const auto ix = hn::IndicesFromVec(df, hn::And(idx, hn::Set(di, int(kN) - 1)));
    VF r = hn::TableLookupLanes(part[0], ix);
    for (std::size_t k = 1; k < kVecs; ++k)
      r = hn::IfThenElse(hn::RebindMask(df, hn::Gt(idx, hn::Set(di, int(k * kN) - 1))),
                         hn::TableLookupLanes(part[k], ix), r);
    return r;
  }
};

/// The midpoints each step of the binary search compares with. After step k the search has
/// settled the top k bits of the code, j (j < 2^k), and the next step reads mids[8j + 3],
/// mids[4j + 1], then mids[2j] (mids[15] = +inf): tables of 2, 4 and 8 entries indexed by j
/// itself, one permute each on 8 or 16 lanes.
struct SearchTables {
  VF mid7;
  Table<2> step2;
  Table<4> step3;
  Table<8> step4;
  explicit SearchTables(const float* mids)
      : mid7(hn::Set(DF(), mids[7])), step2(mids + 3, 8), step3(mids + 1, 4), step4(mids, 2) {}
};

/// The level of a code, times the block's scale: one 16-entry table where a vector holds 16
/// lanes; on narrower vectors the even and odd levels as two 8-entry tables indexed by the
/// code's top three bits, picked by the last search step (cheaper than a 16-entry lookup).
struct ScaledLevels {
  static constexpr bool kSplit = kN < 16;
  Table<kSplit ? 8 : 16> even;  // every level when not split
  Table<8> odd;                 // unused when not split
  explicit ScaledLevels(const float* levels) : even(levels, kSplit ? 2 : 1), odd(levels + 1, 2) {}
  /// The levels times s, as x - level·s rounds them.
  ScaledLevels(const ScaledLevels& levels, VF s) : even(levels.even, s), odd(levels.odd, s) {}
};

struct F32Load {
  const float* p;
  VF operator()(std::int64_t i) const { return hn::LoadU(DF(), p + i); }
};
struct Bf16Load {  // bf16 -> f32: the bits << 16; bytes at any alignment
  const std::byte* p;
  VF operator()(std::int64_t i) const {
    const hn::Rebind<std::uint16_t, DF> d16;
    const hn::Repartition<std::uint8_t, decltype(d16)> d8;
    const auto h =
        hn::BitCast(d16, hn::LoadU(d8, reinterpret_cast<const std::uint8_t*>(p + 2 * i)));
    return hn::BitCast(DF(), hn::ShiftLeft<16>(hn::PromoteTo(hn::RebindToUnsigned<DF>(), h)));
  }
};

/// Codes of kN values, two per byte high nibble first: in a 64-bit lane, code 2k is the low
/// 32 bits and code 2k+1 the high ones (little-endian lanes on every target here). The low byte
/// of (v << 4) | (v >> 32) is the pair's byte (codes are below 16); the truncation keeps only it.
HWY_INLINE void store_packed(VI codes, std::uint8_t* out) {
  const hn::Repartition<std::uint64_t, DI> d64;
  const auto v = hn::BitCast(d64, codes);
  const auto p = hn::Or(hn::ShiftLeft<4>(v), hn::ShiftRight<32>(v));
#if HWY_TARGET == HWY_AVX3
  // One vpmovqb: Highway 1.0.3's TruncateTo spends four shuffles on it (a fifth of the kernel).
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm512_cvtepi64_epi8(p.raw));
#else
  const hn::Rebind<std::uint8_t, decltype(d64)> d8;
  hn::StoreU(hn::TruncateTo(d8, p), d8, out);
#endif
}

/// The 16 codes of one group (kParts vectors, in order), packed into 8 bytes.
HWY_INLINE void store_group(const VI (&codes)[kParts], std::uint8_t* out) {
#if HWY_TARGET == HWY_AVX2
  // Two vectors at once: narrow to 16 codes as u16 in order, then 16·c[2k] + c[2k+1] by one
  // multiply-add of adjacent pairs, then narrow to bytes (half the instructions of two
  // store_packed, whose truncation costs a shuffle, an extract and an or per vector).
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(codes[0].raw, codes[1].raw), 0xD8);
  const __m256i pairs = _mm256_madd_epi16(w, _mm256_set1_epi32(0x00010010));
  const __m128i b =
      _mm_packus_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(b, b));
#else
  for (std::size_t k = 0; k < kParts; ++k)
    store_packed(codes[k], out + k * kN / 2);
#endif
}

/// The count of midpoints strictly below v by a 4-step binary search (mids sorted, mids[15] =
/// +inf): the same count as comparing against all 15. Each step appends one bit: j = 2j + (v >
/// mid), with the comparison's all-ones mask as -1. `last` is the last step's mask (v above
/// mids[2j] of the final j: the code is odd).
HWY_INLINE VI code_of(VF v, const SearchTables& t, hn::Mask<DF>& last) {
  const DI di;
  const auto bit = [&](VF mid) { return hn::VecFromMask(di, hn::RebindMask(di, hn::Gt(v, mid))); };
  VI j = hn::Neg(bit(t.mid7));
  j = hn::Sub(hn::Add(j, j), bit(t.step2.lookup(j)));
  j = hn::Sub(hn::Add(j, j), bit(t.step3.lookup(j)));
  last = hn::Gt(v, t.step4.lookup(j));
  return hn::Sub(hn::Add(j, j), hn::VecFromMask(di, hn::RebindMask(di, last)));
}

/// level[c] · s for the codes c that code_of returned with `last`.
HWY_INLINE VF scaled_level(VI c, hn::Mask<DF> last, const ScaledLevels& t) {
  if constexpr (!ScaledLevels::kSplit) return t.even.lookup(c);
  const VI j = hn::ShiftRight<1>(c);
  return hn::IfThenElse(last, t.odd.lookup(j), t.even.lookup(j));
}

/// One block's float lane sums, element i in lane i % 16 (kParts vectors of kN lanes), and the
/// largest |error| (a max needs no fixed lane).
struct BlockSums {
  VF se[kParts], sx[kParts], mx;
  BlockSums() : mx(hn::Zero(DF())) {
    for (std::size_t k = 0; k < kParts; ++k)
      se[k] = sx[k] = hn::Zero(DF());
  }
};

/// The codebook's tables, built once per kernel call, and the whole groups of 16 of one block.
struct Encoder {
  SearchTables search;
  ScaledLevels levels;
  explicit Encoder(const Book16& book) : search(book.mids), levels(book.levels) {}

  template <bool kErr, class Load>
  HWY_INLINE void groups(Load load, std::int64_t n16, float inv, float s, std::uint8_t* out,
                         BlockSums& sums) const {
    const DF df;
    const VF vinv = hn::Set(df, inv);
    const ScaledLevels scaled(levels, hn::Set(df, s));  // unused without kErr
    for (std::int64_t i = 0; i < n16; i += 16) {
      VI c[kParts];
      for (std::size_t k = 0; k < kParts; ++k) {
        const VF x = load(i + std::int64_t(k * kN));
        hn::Mask<DF> last;
        c[k] = code_of(hn::Mul(x, vinv), search, last);
        if constexpr (kErr) {
          const VF e = hn::Sub(x, scaled_level(c[k], last, scaled));
          sums.se[k] = hn::MulAdd(e, e, sums.se[k]);
          sums.sx[k] = hn::MulAdd(x, x, sums.sx[k]);
          sums.mx = hn::Max(sums.mx, hn::Abs(e));
        }
      }
      store_group(c, out + i / 2);
    }
  }
};

template <class Load>
std::int64_t encode_groups(const Book16& book, Load load, std::int64_t n, float inv, float s,
                           std::uint8_t* out, RunSums* sums) {
  const DF df;
  const Encoder enc(book);
  const std::int64_t n16 = n / 16 * 16;
  BlockSums b;
  if (!sums) {
    enc.groups<false>(load, n16, inv, s, out, b);
    return n16;
  }
  enc.groups<true>(load, n16, inv, s, out, b);
  for (std::size_t k = 0; k < kParts; ++k) {
    hn::StoreU(b.se[k], df, sums->se + k * kN);
    hn::StoreU(b.sx[k], df, sums->sx + k * kN);
  }
  sums->max_abs = hn::GetLane(hn::MaxOfLanes(df, b.mx));
  return n16;
}

/// `count` blocks of `block` values (a multiple of 16), each folded into `err` as one call of
/// encode_groups would be: its float lane sums widened to double and added lane by lane.
template <class Load>
void encode_blocks(const Book16& book, Load load, std::int64_t count, std::int64_t block,
                   const float* inv, const float* s, std::uint8_t* out, LaneSums* err) {
  const DF df;
  const Encoder enc(book);
  if (!err) {
    BlockSums unused;
    for (std::int64_t b = 0; b < count; ++b)
      enc.groups<false>([&](std::int64_t i) { return load(b * block + i); }, block, inv[b], 0.0f,
                        out + b * block / 2, unused);
    return;
  }
  const hn::Repartition<double, DF> dd;  // kN / 2 lanes
  const hn::Half<DF> dh;
  constexpr std::size_t kHalf = kN / 2;
  hn::Vec<decltype(dd)> se[2 * kParts], sx[2 * kParts];
  for (std::size_t j = 0; j < 2 * kParts; ++j) {
    se[j] = hn::LoadU(dd, err->se + j * kHalf);
    sx[j] = hn::LoadU(dd, err->sx + j * kHalf);
  }
  VF mx = hn::Zero(df);
  for (std::int64_t b = 0; b < count; ++b) {
    BlockSums r;
    enc.groups<true>([&](std::int64_t i) { return load(b * block + i); }, block, inv[b], s[b],
                     out + b * block / 2, r);
    for (std::size_t k = 0; k < kParts; ++k) {
      se[2 * k] = hn::Add(se[2 * k], hn::PromoteTo(dd, hn::LowerHalf(dh, r.se[k])));
      se[2 * k + 1] = hn::Add(se[2 * k + 1], hn::PromoteTo(dd, hn::UpperHalf(dh, r.se[k])));
      sx[2 * k] = hn::Add(sx[2 * k], hn::PromoteTo(dd, hn::LowerHalf(dh, r.sx[k])));
      sx[2 * k + 1] = hn::Add(sx[2 * k + 1], hn::PromoteTo(dd, hn::UpperHalf(dh, r.sx[k])));
    }
    mx = hn::Max(mx, r.mx);
  }
  for (std::size_t j = 0; j < 2 * kParts; ++j) {
    hn::StoreU(se[j], dd, err->se + j * kHalf);
    hn::StoreU(sx[j], dd, err->sx + j * kHalf);
  }
  // The max of the blocks' maxima, in any order (float to double is exact and monotone).
  err->max_abs = std::max(err->max_abs, double(hn::GetLane(hn::MaxOfLanes(df, mx))));
}

std::int64_t EncodeF32(const Book16& book, const float* x, std::int64_t n, float inv, float s,
                       std::uint8_t* out, RunSums* sums) {
  return encode_groups(book, F32Load{x}, n, inv, s, out, sums);
}

std::int64_t EncodeBf16(const Book16& book, const std::byte* x, std::int64_t n, float inv, float s,
                        std::uint8_t* out, RunSums* sums) {
  return encode_groups(book, Bf16Load{x}, n, inv, s, out, sums);
}

void EncodeBlocksF32(const Book16& book, const float* x, std::int64_t count, std::int64_t block,
                     const float* inv, const float* s, std::uint8_t* out, LaneSums* err) {
  encode_blocks(book, F32Load{x}, count, block, inv, s, out, err);
}

void EncodeBlocksBf16(const Book16& book, const std::byte* x, std::int64_t count,
                      std::int64_t block, const float* inv, const float* s, std::uint8_t* out,
                      LaneSums* err) {
  encode_blocks(book, Bf16Load{x}, count, block, inv, s, out, err);
}

void Bf16Absmax(const std::byte* x, std::int64_t n, std::int64_t block, float* out) {
  const hn::ScalableTag<std::uint16_t> d16;
  const hn::Repartition<std::uint8_t, decltype(d16)> d8;
  const auto n16 = static_cast<std::int64_t>(hn::Lanes(d16));
  const auto magnitude = hn::Set(d16, std::uint16_t{0x7FFF});
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b) {
    const std::int64_t cnt = std::min(block, n - lo);
    auto acc = hn::Zero(d16);
    std::int64_t i = 0;
    for (; i + n16 <= cnt; i += n16) {
      const auto* p = reinterpret_cast<const std::uint8_t*>(x + 2 * (lo + i));
      acc = hn::Max(acc, hn::And(hn::BitCast(d16, hn::LoadU(d8, p)), magnitude));
    }
    std::uint16_t top = hn::GetLane(hn::MaxOfLanes(d16, acc));
    for (; i < cnt; ++i) {
      std::uint16_t h;
      std::memcpy(&h, x + 2 * (lo + i), 2);
      top = std::max<std::uint16_t>(top, h & 0x7FFF);
    }
    const std::uint32_t bits = std::uint32_t{top} << 16;
    std::memcpy(out + b, &bits, 4);
  }
}

// As Bf16Absmax for f32: the 31 magnitude bits compared as integers (the float order of
// non-negative floats; Inf and NaN blocks get Inf and NaN).
void F32Absmax(const float* x, std::int64_t n, std::int64_t block, float* out) {
  const hn::RebindToUnsigned<DF> du;
  const auto magnitude = hn::Set(du, 0x7FFFFFFFu);
  for (std::int64_t lo = 0, b = 0; lo < n; lo += block, ++b) {
    const std::int64_t cnt = std::min(block, n - lo);
    auto acc = hn::Zero(du);
    std::int64_t i = 0;
    for (; i + std::int64_t(kN) <= cnt; i += kN)
      acc = hn::Max(acc, hn::And(hn::BitCast(du, hn::LoadU(DF(), x + lo + i)), magnitude));
    std::uint32_t top = hn::GetLane(hn::MaxOfLanes(du, acc));
    for (; i < cnt; ++i) {
      std::uint32_t u;
      std::memcpy(&u, x + lo + i, 4);
      top = std::max(top, u & 0x7FFFFFFFu);
    }
    std::memcpy(out + b, &top, 4);
  }
}

// out[i] = levels[code i] · s for the nibbles of p, high nibble first: kN/2 bytes widened to
// 16-bit lanes (high nibble in the low byte, low nibble in the high byte), seen as kN bytes in
// element order, widened to 32-bit indices.
std::int64_t Dequant16(const std::uint8_t* p, std::int64_t n, float s, const float* levels,
                       float* out) {
  const DF df;
  const DI di;
  const hn::Half<DI> dih;
  const hn::Rebind<std::uint8_t, decltype(dih)> d8h;
  const hn::Rebind<std::uint16_t, decltype(dih)> d16h;
  const hn::Repartition<std::uint8_t, decltype(d16h)> d8;
  const hn::RebindToUnsigned<DI> du;
  const Table<16> lv(levels);
  const VF sv = hn::Set(df, s);
  std::int64_t i = 0;
  for (; i + std::int64_t(kN) <= n; i += kN) {
    const auto b = hn::PromoteTo(d16h, hn::LoadU(d8h, p + i / 2));
    const auto w = hn::Or(hn::ShiftRight<4>(b), hn::ShiftLeft<8>(hn::And(b, hn::Set(d16h, 0x0F))));
    const VI idx = hn::BitCast(di, hn::PromoteTo(du, hn::BitCast(d8, w)));
    hn::StoreU(hn::Mul(lv.lookup(idx), sv), df, out + i);
  }
  return i;
}

// bnb's FP4 encoder (codebook.cpp's encode_fp4): the rank of |x·inv| among 7 thresholds (strict
// >), its code, the sign bit for v < 0; optionally the code's level.
std::size_t EncodeFp4(const float* x, std::size_t n, float inv, const float* thresholds,
                      const std::uint8_t* code_of_rank, const float* levels, std::uint8_t* codes,
                      float* levels_out) {
  const DF df;
  const DI di;
  float rank_codes[8];
  for (int r = 0; r < 8; ++r)
    rank_codes[r] = static_cast<float>(code_of_rank[r]);
  const Table<8> cor(rank_codes);
  const Table<16> lv(levels);
  VF t[7];
  for (int j = 0; j < 7; ++j)
    t[j] = hn::Set(df, thresholds[j]);
  const VF iv = hn::Set(df, inv);
  const hn::Rebind<std::uint8_t, DI> d8;
  std::size_t i = 0;
  for (; i + kN <= n; i += kN) {
    const VF v = hn::Mul(hn::LoadU(df, x + i), iv);
    const VF a = hn::Abs(v);
    VI rank = hn::Zero(di);
    for (int j = 0; j < 7; ++j)  // a mask lane is all ones: -1 as an integer
      rank = hn::Sub(rank, hn::BitCast(di, hn::VecFromMask(df, hn::Gt(a, t[j]))));
    VI code = hn::ConvertTo(di, cor.lookup(rank));
    code = hn::Or(code,
                  hn::IfThenElseZero(hn::RebindMask(di, hn::Lt(v, hn::Zero(df))), hn::Set(di, 8)));
    hn::StoreU(hn::DemoteTo(d8, code), d8, codes + i);
    if (levels_out) hn::StoreU(lv.lookup(code), df, levels_out + i);
  }
  return i;
}

void CountBelow(const float* run_last, const float* padded, const float* x, std::size_t n,
                std::uint8_t* codes) {
  const DF df;
  const Table<16> last(run_last);
  for (std::size_t i = 0; i < n; ++i) {
    const VF v = hn::Set(df, x[i]);
    std::size_t runs = 0, below = 0;
    for (std::size_t k = 0; k < kParts; ++k)
      runs += hn::CountTrue(df, hn::Lt(last.part[k], v));  // kParts vectors of 16 floats
    for (std::size_t k = 0; k < kParts; ++k)
      below += hn::CountTrue(df, hn::Lt(hn::LoadU(df, padded + 16 * runs + k * kN), v));
    codes[i] = static_cast<std::uint8_t>(16 * runs + below);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace ckpt::quant::simd
HWY_AFTER_NAMESPACE();
#endif  // a SimdPath target

#if HWY_ONCE
namespace ckpt::quant::simd {

#define CKPT_SIMD_KERNELS(NS)                                                                      \
  static constexpr Kernels k {                                                                     \
    &NS::EncodeF32, &NS::EncodeBf16, &NS::EncodeBlocksF32, &NS::EncodeBlocksBf16, &NS::Bf16Absmax, \
        &NS::F32Absmax, &NS::CountBelow, &NS::Dequant16, &NS::EncodeFp4                            \
  }

const Kernels* kernels_for(SimdPath path) {
  CKPT_SIMD_KERNELS_FOR(path, CKPT_SIMD_KERNELS)
}

#undef CKPT_SIMD_KERNELS

}  // namespace ckpt::quant::simd
#endif  // HWY_ONCE
