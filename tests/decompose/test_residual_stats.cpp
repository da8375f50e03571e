// The residual-cast statistics of decompose/residual_stats.hpp: every vector path against the
// scalar reference, bit for bit, and the reference against a direct computation.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/decompose/residual_stats.hpp"

using namespace ckpt;
using residual::LaneStats;

namespace {

struct Case {
  std::vector<float> x, stored, w;
};

/// n residual values (some huge, tiny, zero, NaN), their cast to `t` through the library's own
/// conversion, and input entries around them (subnormal and zero ones too).
Case make_case(std::size_t n, DType t, std::uint64_t seed) {
  Rng rng(seed, "residual-stats");
  Case c;
  for (std::size_t i = 0; i < n; ++i) {
    float x = static_cast<float>(rng.normal() * std::ldexp(1.0, int(rng.uniform() * 40) - 20));
    if (i % 97 == 5) x = 0.0f;
    if (i % 89 == 7) x = 7e4f;  // f16: stored becomes Inf
    if (i % 101 == 9) x = 1e-41f;
    if (i % 211 == 11) x = std::numeric_limits<float>::quiet_NaN();
    c.x.push_back(x);
    float w = x + static_cast<float>(rng.normal()) * 1e-3f * std::fabs(x);
    if (i % 13 == 3) w = 0.0f;
    if (i % 17 == 4) w = 3e-39f;
    if (i % 19 == 2) {  // an error of exactly one ulp of w (2^-9 / 2^-12 below 1, w in [1/4, 1/2))
      c.x.back() = 1.0f + (t == DType::F16 ? 0x1p-12f : 0x1p-9f);
      w = 0.3f;
    }
    c.w.push_back(w);
  }
  std::vector<std::byte> bytes(n * dtype_size(t));
  encode_from_f32(t, c.x, bytes, SimdPath::Scalar);
  c.stored.resize(n);
  decode_to_f32(t, bytes, c.stored, SimdPath::Scalar);
  return c;
}

bool same_bits(const LaneStats& a, const LaneStats& b) {
  return std::memcmp(a.sq, b.sq, sizeof a.sq) == 0 &&
         std::memcmp(a.max_abs, b.max_abs, sizeof a.max_abs) == 0 &&
         std::memcmp(a.max_ulps, b.max_ulps, sizeof a.max_ulps) == 0 &&
         std::memcmp(a.max_res_ulps, b.max_res_ulps, sizeof a.max_res_ulps) == 0 &&
         std::memcmp(a.within, b.within, sizeof a.within) == 0;
}

}  // namespace

TEST_CASE("residual cast statistics: every path gives the scalar lanes bit for bit",
          "[simd][pissa]") {
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    const auto ulp = residual::UlpFormat::of(t);
    for (std::size_t n : {1u, 7u, 8u, 9u, 31u, 512u, 1003u, 4099u}) {
      const Case c = make_case(n, t, n);
      LaneStats ref;
      residual::add_cast_stats(c.x.data(), c.stored.data(), c.w.data(), n, ulp, ref,
                               SimdPath::Scalar);
      for (SimdPath p : available_simd_paths()) {
        INFO(dtype_name(t) << " n=" << n << " on " << simd_path_name(p));
        REQUIRE((p == SimdPath::Scalar || residual::kernels_for(p) != nullptr));
        LaneStats s;
        residual::add_cast_stats(c.x.data(), c.stored.data(), c.w.data(), n, ulp, s, p);
        CHECK(same_bits(s, ref));
      }
      // The reference against a direct computation of the same quantities, lane by lane.
      double sq[8] = {}, max_ulps[8] = {};
      std::uint64_t within[8] = {};
      for (std::size_t j = 0; j < n; ++j) {
        if (std::isnan(c.x[j])) continue;
        const double e = std::fabs(static_cast<double>(c.stored[j]) - c.x[j]);
        sq[j % 8] += static_cast<double>(c.x[j]) * c.x[j];
        int ex = 0;
        std::frexp(c.w[j], &ex);  // |w| in [2^(ex-1), 2^ex); 0 has the smallest exponent
        const int e_w = c.w[j] == 0.0f ? ulp.emin : std::max(ex - 1, ulp.emin);
        const double u = e / std::ldexp(1.0, e_w - ulp.mant);
        max_ulps[j % 8] = std::max(max_ulps[j % 8], u);
        within[j % 8] += u <= 1.0 ? 1 : 0;
      }
      for (std::size_t l = 0; l < 8; ++l) {
        INFO(dtype_name(t) << " n=" << n << " lane " << l);
        if (!std::isnan(ref.sq[l])) CHECK(ref.sq[l] == sq[l]);
        CHECK(ref.within[l] == within[l]);
        CHECK(ref.max_ulps[l] == max_ulps[l]);
      }
    }
  }
}
