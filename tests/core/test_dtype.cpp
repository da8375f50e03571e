// Float conversions checked against references computed independently of the code under test:
// values from the IEEE bit layout with std::ldexp, and nearest-value rounding by binary search
// over the (monotonic) bit patterns of the 16-bit format.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"

using namespace ckpt;

namespace {

/// Value of an f16 bit pattern from the IEEE 754 binary16 definition (finite patterns only).
double f16_reference(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  const double mag = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

double bf16_reference(std::uint16_t h) {
  const int exp = (h >> 7) & 0xff;
  const int man = h & 0x7f;
  const double mag = exp == 0 ? std::ldexp(man, -133) : std::ldexp(128 + man, exp - 134);
  return (h & 0x8000) ? -mag : mag;
}

/// Correct round-to-nearest-even of a non-negative finite double into a 16-bit format whose
/// positive finite patterns are [0, inf_bits) in increasing value order.
std::uint16_t round_reference(double d, std::uint16_t inf_bits, double (*value)(std::uint16_t)) {
  // The pattern past the largest finite one: 2^(emax+1), as if the exponent range went on.
  const double max = value(static_cast<std::uint16_t>(inf_bits - 1));
  const double ulp_top = max - value(static_cast<std::uint16_t>(inf_bits - 2));
  const double beyond = max + ulp_top;
  if (d >= (max + beyond) / 2) return inf_bits;  // a tie there goes to the "even" beyond: inf
  std::uint32_t lo = 0, hi = inf_bits - 1;       // largest pattern with value <= d
  while (lo < hi) {
    const std::uint32_t mid = (lo + hi + 1) / 2;
    if (value(static_cast<std::uint16_t>(mid)) <= d)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (value(static_cast<std::uint16_t>(lo)) == d || lo == inf_bits - 1u)
    return static_cast<std::uint16_t>(lo);
  const double a = value(static_cast<std::uint16_t>(lo));
  const double b = value(static_cast<std::uint16_t>(lo + 1));
  const double mid = (a + b) / 2;  // exact in double: both have at most 11 significant bits
  if (d < mid) return static_cast<std::uint16_t>(lo);
  if (d > mid) return static_cast<std::uint16_t>(lo + 1);
  return static_cast<std::uint16_t>((lo & 1) ? lo + 1 : lo);
}

std::uint16_t f16_round_reference(double d) {
  const std::uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  return sign | round_reference(std::fabs(d), 0x7c00, f16_reference);
}

std::uint16_t bf16_round_reference(double d) {
  const std::uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  return sign | round_reference(std::fabs(d), 0x7f80, bf16_reference);
}

bool f16_is_nan(std::uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}
bool bf16_is_nan(std::uint16_t h) {
  return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
}

float from_bits(std::uint32_t u) {
  return std::bit_cast<float>(u);
}

}  // namespace

TEST_CASE("f16 -> f32 -> f16 round-trips all 65536 bit patterns exactly", "[dtype]") {
  int mismatches = 0, nans = 0;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = f16_to_f32(bits);
    const std::uint16_t back = f32_to_f16(f);
    if (f16_is_nan(bits)) {
      ++nans;
      // NaN stays NaN with its sign (a signaling NaN may come back quieted).
      if (!std::isnan(f) || !f16_is_nan(back) || (back & 0x8000) != (bits & 0x8000)) ++mismatches;
      continue;
    }
    const bool is_inf = (bits & 0x7fff) == 0x7c00;
    const double expect = is_inf ? (bits & 0x8000 ? -INFINITY : INFINITY) : f16_reference(bits);
    if (static_cast<double>(f) != expect || back != bits ||
        std::signbit(f) != static_cast<bool>(bits & 0x8000))
      ++mismatches;
  }
  CHECK(nans == 2 * 1023);
  CHECK(mismatches == 0);
}

TEST_CASE("bf16 -> f32 -> bf16 round-trips all 65536 bit patterns exactly", "[dtype]") {
  int mismatches = 0;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = bf16_to_f32(bits);
    const std::uint16_t back = f32_to_bf16(f);
    if (bf16_is_nan(bits)) {
      if (!std::isnan(f) || !bf16_is_nan(back) || (back & 0x8000) != (bits & 0x8000)) ++mismatches;
      continue;
    }
    const bool is_inf = (bits & 0x7fff) == 0x7f80;
    const double expect = is_inf ? (bits & 0x8000 ? -INFINITY : INFINITY) : bf16_reference(bits);
    if (static_cast<double>(f) != expect || back != bits) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("f32 -> f16 rounds every midpoint to even and its neighbours to nearest", "[dtype]") {
  // Every pair of adjacent finite f16 values, subnormals included: the midpoint needs 12
  // significant bits, so it is exact in f32.
  int bad_tie = 0, bad_below = 0, bad_above = 0;
  for (std::uint16_t lo = 0; lo < 0x7bff; ++lo) {
    const auto hi = static_cast<std::uint16_t>(lo + 1);
    const float mid = static_cast<float>((f16_reference(lo) + f16_reference(hi)) / 2);
    const std::uint16_t even = (lo & 1) ? hi : lo;
    if (f32_to_f16(mid) != even) ++bad_tie;
    if (f32_to_f16(-mid) != (0x8000 | even)) ++bad_tie;
    if (f32_to_f16(std::nextafter(mid, 0.0f)) != lo) ++bad_below;
    if (f32_to_f16(std::nextafter(mid, INFINITY)) != hi) ++bad_above;
  }
  CHECK(bad_tie == 0);
  CHECK(bad_below == 0);
  CHECK(bad_above == 0);
}

TEST_CASE("f32 -> bf16 rounds every midpoint to even and its neighbours to nearest", "[dtype]") {
  int bad_tie = 0, bad_below = 0, bad_above = 0;
  for (std::uint16_t lo = 0; lo < 0x7f7f; ++lo) {
    const auto hi = static_cast<std::uint16_t>(lo + 1);
    const float mid = static_cast<float>((bf16_reference(lo) + bf16_reference(hi)) / 2);
    const std::uint16_t even = (lo & 1) ? hi : lo;
    if (f32_to_bf16(mid) != even || f32_to_bf16(-mid) != (0x8000 | even)) ++bad_tie;
    if (f32_to_bf16(std::nextafter(mid, 0.0f)) != lo) ++bad_below;
    if (f32_to_bf16(std::nextafter(mid, INFINITY)) != hi) ++bad_above;
  }
  CHECK(bad_tie == 0);
  CHECK(bad_below == 0);
  CHECK(bad_above == 0);
}

TEST_CASE("f32 -> f16/bf16 match the reference rounding on random and edge values", "[dtype]") {
  Rng rng(42, "dtype-random");
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               65504.0f,
                               65519.996f,
                               65520.0f,
                               1e-8f,
                               3e-8f,
                               5.9604645e-8f,
                               2.9802322e-8f,
                               6.1035156e-5f,
                               6.0975552e-5f,
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::min()};
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent; skip NaN/inf (tested separately).
    const auto u = static_cast<std::uint32_t>(rng.next_u64());
    const float f = from_bits(u);
    if (std::isfinite(f)) values.push_back(f);
  }
  int bad16 = 0, bad_b16 = 0;
  std::uint32_t first_bad = 0;
  for (float f : values) {
    if (f32_to_f16(f) != f16_round_reference(f)) {
      if (!bad16) first_bad = std::bit_cast<std::uint32_t>(f);
      ++bad16;
    }
    if (f32_to_bf16(f) != bf16_round_reference(f)) ++bad_b16;
  }
  INFO("first f16 mismatch at f32 bits " << first_bad);
  CHECK(bad16 == 0);
  CHECK(bad_b16 == 0);
}

TEST_CASE("overflow, infinity and NaN into 16 bits", "[dtype]") {
  // f16: 65504 is the largest finite; 65520 is the midpoint to 2^16 and ties to "even" infinity.
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(-1e6f) == 0xfc00);
  CHECK(f32_to_f16(INFINITY) == 0x7c00);
  CHECK(f32_to_f16(-INFINITY) == 0xfc00);
  // bf16: FLT_MAX is above the midpoint between bf16 max and 2^128, so it rounds to infinity.
  CHECK(f32_to_bf16(from_bits(0x7f7f7fff)) == 0x7f7f);
  CHECK(f32_to_bf16(from_bits(0x7f7f8000)) == 0x7f80);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(f32_to_bf16(-INFINITY) == 0xff80);
  // NaNs whose payload sits only in the low 16 bits must not turn into infinity by truncation.
  for (std::uint32_t nan : {0x7f800001u, 0x7fc00000u, 0xff800001u, 0x7fffffffu, 0x7f80ffffu}) {
    INFO("f32 NaN bits " << nan);
    CHECK(bf16_is_nan(f32_to_bf16(from_bits(nan))));
    CHECK(f16_is_nan(f32_to_f16(from_bits(nan))));
    CHECK(((f32_to_bf16(from_bits(nan)) & 0x8000) != 0) == ((nan & 0x80000000u) != 0));
  }
  // Subnormal results: f16's smallest subnormal is 2^-24; half of it ties to 0 (even).
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);
  CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 ulp ties to 2 (even)
  CHECK(f32_to_f16(-std::ldexp(1.0f, -26)) == 0x8000);
  // The largest subnormal rounding up into the smallest normal.
  CHECK(f32_to_f16(std::nextafter(std::ldexp(1.0f, -14), 0.0f)) == 0x0400);
}

TEST_CASE("F64 -> BF16/F16 rounds once, not twice through f32", "[dtype]") {
  auto convert1 = [](double d, DType to) {
    std::byte in[8];
    std::memcpy(in, &d, 8);
    const auto out = convert_float_bytes(DType::F64, to, std::span<const std::byte>(in, 8));
    std::uint16_t h;
    std::memcpy(&h, out.data(), 2);
    return h;
  };
  // 1 + 2^-8 + 2^-30 is just above the bf16 midpoint between 1 and 1+2^-7: correct is up (0x3f81);
  // rounding to f32 first gives exactly the midpoint, which ties to the even 0x3f80.
  const double just_above = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  REQUIRE(f32_to_bf16(static_cast<float>(just_above)) == 0x3f80);  // the double-rounding trap
  CHECK(convert1(just_above, DType::BF16) == 0x3f81);
  CHECK(convert1(-just_above, DType::BF16) == 0xbf81);
  const double just_below = 1.0 + 3 * std::ldexp(1.0, -8) - std::ldexp(1.0, -30);
  CHECK(convert1(just_below, DType::BF16) == 0x3f81);
  // The same for f16: midpoint between 1 and 1+2^-10.
  const double f16_above = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  REQUIRE(f32_to_f16(static_cast<float>(f16_above)) == 0x3c00);
  CHECK(convert1(f16_above, DType::F16) == 0x3c01);
  // Random doubles against the reference, including tiny and huge magnitudes.
  Rng rng(7, "f64-random");
  int bad_bf16 = 0, bad_f16 = 0;
  for (int i = 0; i < 100000; ++i) {
    const double mant = 1.0 + rng.uniform();
    const int e = static_cast<int>(rng.next_u64() % 300) - 150;
    const double d = (rng.next_u64() & 1 ? -1 : 1) * std::ldexp(mant, e);
    if (convert1(d, DType::BF16) != bf16_round_reference(d)) ++bad_bf16;
    if (convert1(d, DType::F16) != f16_round_reference(d)) ++bad_f16;
  }
  CHECK(bad_bf16 == 0);
  CHECK(bad_f16 == 0);
  CHECK(bf16_is_nan(convert1(std::nan(""), DType::BF16)));
  CHECK(convert1(1e300, DType::BF16) == 0x7f80);
  CHECK(convert1(-1e300, DType::F16) == 0xfc00);
}

TEST_CASE("encode/decode and convert_float_bytes between all float types", "[dtype]") {
  const std::vector<float> v = {0.0f, 1.0f, -2.5f, 0.1f, 1e-3f, 300.0f};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    std::vector<std::byte> bytes(v.size() * dtype_size(t));
    encode_from_f32(t, v, bytes);
    std::vector<float> back(v.size());
    decode_to_f32(t, bytes, back);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float tol = t == DType::BF16 ? 4e-3f : t == DType::F16 ? 5e-4f : 0.0f;  // half ulp rel.
      INFO(dtype_name(t) << " value " << v[i] << " came back " << back[i]);
      CHECK(std::fabs(back[i] - v[i]) <= tol * std::fabs(v[i]));
    }
    // F32 -> t through convert_float_bytes equals encode_from_f32.
    std::vector<std::byte> f32(v.size() * 4);
    std::memcpy(f32.data(), v.data(), f32.size());
    CHECK(convert_float_bytes(DType::F32, t, f32) == bytes);
  }
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::F64) == 8);
  CHECK(dtype_size(DType::Bool) == 1);
  CHECK(parse_dtype("BF16") == DType::BF16);
  CHECK(parse_dtype("BOOL") == DType::Bool);
  CHECK_FALSE(parse_dtype("bf16").has_value());
  CHECK(parse_float_dtype("bfloat16") == DType::BF16);
  CHECK(parse_float_dtype("fp16") == DType::F16);
  CHECK_FALSE(parse_float_dtype("int8").has_value());
  std::vector<float> one(1);
  CHECK_THROWS_AS(decode_to_f32(DType::I32, std::vector<std::byte>(4), one), Error);
}

TEST_CASE("span decode of every 16-bit pattern equals the IEEE definition", "[dtype][span]") {
  // The span kernels are branch-free rewrites (vectorized); check them on all 65536 patterns of
  // both formats, in one buffer with odd length so that the vector loop's tail runs too.
  std::vector<std::byte> bytes(65536 * 2 + 2);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto v = static_cast<std::uint16_t>(h);
    std::memcpy(bytes.data() + 2 * h, &v, 2);
  }
  std::memcpy(bytes.data() + 2 * 65536, bytes.data() + 2 * 0x3c00, 2);  // tail element: 1.0 in f16
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<float> out(65537);
    decode_to_f32(t, bytes, out);
    std::size_t bad = 0;
    for (std::uint32_t h = 0; h < 65536; ++h) {
      const auto v = static_cast<std::uint16_t>(h);
      const bool f16 = t == DType::F16;
      const bool nan = f16 ? f16_is_nan(v) : bf16_is_nan(v);
      const bool inf = f16 ? (v & 0x7fff) == 0x7c00 : (v & 0x7fff) == 0x7f80;
      if (nan) {
        bad += std::isnan(out[h]) ? 0 : 1;
      } else if (inf) {
        bad += std::isinf(out[h]) && std::signbit(out[h]) == bool(v & 0x8000) ? 0 : 1;
      } else {
        const double ref = f16 ? f16_reference(v) : bf16_reference(v);
        // -0.0 must stay -0.0: compare the sign too.
        bad += (static_cast<double>(out[h]) == ref && std::signbit(out[h]) == bool(v & 0x8000)) ? 0
                                                                                                : 1;
      }
    }
    INFO(dtype_name(t) << ": " << bad << " of 65536 patterns decoded wrong");
    CHECK(bad == 0);
    CHECK(out[65536] == (t == DType::F16 ? 1.0f : bf16_to_f32(0x3c00)));
  }
}

TEST_CASE("span encode equals reference rounding on edge and random f32 patterns",
          "[dtype][span]") {
  std::vector<float> v;
  // Edges: zeros, subnormals, f16's subnormal/normal boundary and overflow threshold, bf16's
  // largest finite neighbourhood, infinities, NaNs (quiet and signalling payloads).
  for (std::uint32_t u :
       {0x00000000u, 0x80000000u, 0x00000001u, 0x007fffffu, 0x00800000u, 0x33000000u, 0x33000001u,
        0x337fffffu, 0x38800000u, 0x387fffffu, 0x38801000u, 0x477fefffu, 0x477ff000u, 0x477fffffu,
        0x47800000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u,
        0x7f800001u, 0xffbfffffu, 0x3f808000u, 0x3f818000u, 0x3f800fffu})
    v.push_back(from_bits(u));
  Rng rng(7, "span-encode");
  for (int i = 0; i < 60000; ++i)  // random bit patterns: every exponent, sign and payload
    v.push_back(from_bits(static_cast<std::uint32_t>(rng.uniform() * 4294967296.0)));
  for (int i = 0; i < 20000; ++i)  // weight-like values
    v.push_back(static_cast<float>(rng.normal() * 0.02));
  v.push_back(1.5f);  // odd length: the tail loop runs
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<std::byte> bytes(v.size() * 2);
    encode_from_f32(t, v, bytes);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      const bool f16 = t == DType::F16;
      if (std::isnan(v[i])) {
        bad += (f16 ? f16_is_nan(h) : bf16_is_nan(h)) ? 0 : 1;
        continue;
      }
      const std::uint16_t ref =
          f16 ? f16_round_reference(v[i]) : bf16_round_reference(static_cast<double>(v[i]));
      bad += h == ref ? 0 : 1;
    }
    INFO(dtype_name(t) << ": " << bad << " of " << v.size() << " values rounded wrong");
    CHECK(bad == 0);
  }
  // F64 both ways: exact widening, nearest narrowing.
  std::vector<float> finite;
  for (float x : v)
    if (std::isfinite(x)) finite.push_back(x);
  std::vector<std::byte> f64(finite.size() * 8);
  encode_from_f32(DType::F64, finite, f64);
  std::vector<float> back(finite.size());
  decode_to_f32(DType::F64, f64, back);
  CHECK(std::memcmp(back.data(), finite.data(), finite.size() * 4) == 0);
}
