// The vector kernels of core/convert_kernels.hpp against the scalar path, bit for bit: every
// 16-bit pattern decoded, edge and random f32 patterns (NaN payloads included) encoded, and the
// lossless codec's byte planes split and joined.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ckptkit/core/convert_kernels.hpp"
#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/rng.hpp"

using namespace ckpt;

namespace {

std::vector<SimdPath> vector_paths() {
  std::vector<SimdPath> out;
  for (SimdPath p : available_simd_paths())
    if (p != SimdPath::Scalar) out.push_back(p);
  return out;
}

// Every 16-bit pattern, then a few more so that no length is a multiple of a vector: the tail runs.
std::vector<std::byte> all_16bit_patterns() {
  std::vector<std::byte> bytes(2 * 65543);
  for (std::uint32_t h = 0; h < 65543; ++h) {
    const auto v = static_cast<std::uint16_t>(h * 40503u);  // odd multiplier: a permutation
    std::memcpy(bytes.data() + 2 * h, &v, 2);
  }
  return bytes;
}

std::vector<float> f32_patterns() {
  std::vector<float> v;
  for (std::uint32_t u :
       {0x00000000u, 0x80000000u, 0x00000001u, 0x007fffffu, 0x00800000u, 0x33000000u, 0x33000001u,
        0x337fffffu, 0x38800000u, 0x387fffffu, 0x38801000u, 0x477fefffu, 0x477ff000u, 0x477fffffu,
        0x47800000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u,
        0x7f800001u, 0xffbfffffu, 0x3f808000u, 0x3f818000u, 0x3f800fffu, 0xff812345u})
    v.push_back(std::bit_cast<float>(u));
  Rng rng(9, "convert-kernels");
  for (int i = 0; i < 100003; ++i)
    v.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng.uniform() * 4294967296.0)));
  return v;
}

}  // namespace

TEST_CASE("bf16/f16 decode and encode: every path gives the scalar bits", "[simd][dtype]") {
  const auto bytes = all_16bit_patterns();
  const std::size_t n = bytes.size() / 2;
  const auto v = f32_patterns();
  for (DType t : {DType::BF16, DType::F16}) {
    std::vector<float> ref(n);
    decode_to_f32(t, bytes, ref, SimdPath::Scalar);
    std::vector<std::byte> enc_ref(2 * v.size());
    encode_from_f32(t, v, enc_ref, SimdPath::Scalar);
    for (SimdPath p : vector_paths()) {
      INFO(dtype_name(t) << " on " << simd_path_name(p));
      std::vector<float> out(n);
      decode_to_f32(t, bytes, out, p);
      CHECK(std::memcmp(out.data(), ref.data(), 4 * n) == 0);
      std::vector<std::byte> enc(2 * v.size());
      encode_from_f32(t, v, enc, p);
      CHECK(std::memcmp(enc.data(), enc_ref.data(), enc.size()) == 0);
      // Unaligned byte buffers: one byte in.
      std::vector<std::byte> shifted(bytes.size() + 1);
      std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
      decode_to_f32(t, std::span<const std::byte>(shifted).subspan(1), out, p);
      CHECK(std::memcmp(out.data(), ref.data(), 4 * n) == 0);
    }
  }
}

TEST_CASE("lossless byte planes: every path splits and joins as the reference",
          "[simd][lossless]") {
  const auto bytes = all_16bit_patterns();
  const auto* in = reinterpret_cast<const std::uint8_t*>(bytes.data());
  const std::size_t n16 = bytes.size() / 2, n32 = bytes.size() / 4;
  // The reference layouts (io/lossless.cpp): bf16 exponent byte, then sign + 7 mantissa bits; f32
  // exponent, sign + top 7 mantissa bits, then the two low bytes.
  std::vector<std::uint8_t> ref16(2 * n16), ref32(4 * n32);
  for (std::size_t i = 0; i < n16; ++i) {
    const std::uint16_t u = static_cast<std::uint16_t>(in[2 * i] | in[2 * i + 1] << 8);
    ref16[i] = static_cast<std::uint8_t>((u >> 7) & 0xFF);
    ref16[n16 + i] = static_cast<std::uint8_t>(((u >> 8) & 0x80) | (u & 0x7F));
  }
  for (std::size_t i = 0; i < n32; ++i) {
    std::uint32_t u;
    std::memcpy(&u, in + 4 * i, 4);
    ref32[i] = static_cast<std::uint8_t>((u >> 23) & 0xFF);
    ref32[n32 + i] = static_cast<std::uint8_t>(((u >> 24) & 0x80) | ((u >> 16) & 0x7F));
    ref32[2 * n32 + i] = static_cast<std::uint8_t>((u >> 8) & 0xFF);
    ref32[3 * n32 + i] = static_cast<std::uint8_t>(u & 0xFF);
  }
  for (SimdPath p : vector_paths()) {
    INFO("path " << simd_path_name(p));
    const convert::Kernels* k = convert::kernels_for(p);
    REQUIRE(k != nullptr);
    std::vector<std::uint8_t> planes16(2 * n16, 0xEE), planes32(4 * n32, 0xEE);
    const std::size_t done16 = k->split_bf16(in, n16, planes16.data());
    const std::size_t done32 = k->split_f32(in, n32, planes32.data());
    CHECK(done16 > n16 - 64);
    CHECK(done32 > n32 - 64);
    for (std::size_t pl = 0; pl < 2; ++pl)
      CHECK(std::memcmp(planes16.data() + pl * n16, ref16.data() + pl * n16, done16) == 0);
    for (std::size_t pl = 0; pl < 4; ++pl)
      CHECK(std::memcmp(planes32.data() + pl * n32, ref32.data() + pl * n32, done32) == 0);
    std::vector<std::uint8_t> back16(2 * n16), back32(4 * n32);
    CHECK(k->join_bf16(ref16.data(), n16, back16.data()) == done16);
    CHECK(k->join_f32(ref32.data(), n32, back32.data()) == done32);
    CHECK(std::memcmp(back16.data(), in, 2 * done16) == 0);
    CHECK(std::memcmp(back32.data(), in, 4 * done32) == 0);
  }
}

namespace {

/// d rounded to nearest even with `bits` significant bits and the smallest exponent `emin` (the
/// subnormal spacing 2^(emin - bits + 1)), in exact f64 arithmetic (power-of-two scalings and one
/// nearbyint below 2^(bits+1)): an oracle that never goes through f32.
double round_to_bits(double d, int bits, int emin) {
  int e = 0;
  std::frexp(d, &e);  // |d| in [2^(e-1), 2^e)
  const double ulp = std::ldexp(1.0, std::max(e - 1, emin) - (bits - 1));
  return std::nearbyint(d / ulp) * ulp;
}

std::vector<double> f64_patterns() {
  std::vector<double> v = {0.0,
                           -0.0,
                           1.0,
                           -1.0,
                           65504.0,
                           65519.99,
                           65520.0,
                           1e-8,
                           -3e-5,
                           6e-8,
                           5.960464477539063e-08,
                           2.98e-08,
                           3.4028234663852886e38,
                           3.4028235677973366e38,
                           1e39,
                           -1e300,
                           1e-40,
                           1e-45,
                           7e-46,
                           1e-300,
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()};
  Rng rng(11, "f64-to-16");
  // The double-rounding traps: a 16-bit halfway point plus or minus a little less than an f32 ulp,
  // and the halfway points themselves (ties to even), at random magnitudes and both signs.
  for (int i = 0; i < 20000; ++i) {
    const float base =
        static_cast<float>(std::ldexp(1.0 + rng.uniform(), int(rng.uniform() * 60) - 30));
    const double half_bf16 = std::ldexp(1.0, std::ilogb(base) - 8);
    const double half_f16 = std::ldexp(1.0, std::ilogb(base) - 11);
    const double f32_ulp = std::ldexp(1.0, std::ilogb(base) - 23);
    const double sign = rng.uniform() < 0.5 ? -1.0 : 1.0;
    for (double h : {half_bf16, half_f16})
      for (double t : {0.0, 0.3 * f32_ulp, -0.3 * f32_ulp, 1e-3 * f32_ulp, -1e-3 * f32_ulp})
        v.push_back(sign * (static_cast<double>(base) + h + t));
  }
  for (int i = 0; i < 50000; ++i)  // random bit patterns (every exponent, NaN payloads too)
    v.push_back(
        std::bit_cast<double>(static_cast<std::uint64_t>(rng.uniform() * 1.8446744073709552e19)));
  return v;
}

}  // namespace

TEST_CASE("f64 to bf16/f16 rounds once: the correctly rounded value, the same bits on every path",
          "[simd][dtype]") {
  const auto v = f64_patterns();
  for (DType t : {DType::BF16, DType::F16}) {
    INFO(dtype_name(t));
    std::vector<std::byte> ref(2 * v.size());
    std::vector<double> stored(v.size());
    encode_from_f64(t, v, ref, stored, SimdPath::Scalar);
    std::size_t checked = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double d = v[i];
      const bool bf16 = t == DType::BF16;
      if (std::isnan(d)) {
        CHECK(std::isnan(stored[i]));
        continue;
      }
      double want = std::isinf(d) ? d : round_to_bits(d, bf16 ? 8 : 11, bf16 ? -126 : -14);
      if (std::fabs(want) >= (bf16 ? 0x1p128 : 65536.0)) want = std::copysign(INFINITY, d);
      INFO("element " << i << " = " << d);
      REQUIRE(stored[i] == want);
      REQUIRE(std::signbit(stored[i]) == std::signbit(d));
      ++checked;
    }
    CHECK(checked > v.size() * 9 / 10);
    for (SimdPath p : vector_paths()) {
      INFO("path " << simd_path_name(p));
      std::vector<std::byte> out(2 * v.size());
      std::vector<double> out_stored(v.size());
      encode_from_f64(t, v, out, out_stored, p);
      CHECK(std::memcmp(out.data(), ref.data(), out.size()) == 0);
      CHECK(std::memcmp(out_stored.data(), stored.data(), 8 * v.size()) == 0);
    }
  }
}
