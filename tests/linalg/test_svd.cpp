// Exact and randomized SVD against independent references: Eigen's JacobiSVD in f64 and the
// Eckart–Young theorem.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <thread>

#include "ckptkit/linalg/svd.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

// W = G1 · diag(d) · G2 with Gaussian G1 (m×k), G2 (k×n) and d_i = decay^i, plus small noise:
// a decaying spectrum like a trained weight's.
std::vector<float> decaying(std::int64_t m, std::int64_t n, std::uint64_t seed,
                            double decay = 0.93) {
  const std::int64_t k = std::min(m, n);
  auto g1 = test::gaussian(static_cast<std::size_t>(m * k), seed,
                           1.0f / std::sqrt(static_cast<float>(m)));
  auto g2 = test::gaussian(static_cast<std::size_t>(k * n), seed + 1,
                           1.0f / std::sqrt(static_cast<float>(n)));
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      g2[static_cast<std::size_t>(i * n + j)] *= static_cast<float>(std::pow(decay, i));
  auto w = matmul(g1, g2, m, k, n);
  const auto noise = test::gaussian(w.size(), seed + 2, 1e-3f);
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] += noise[i];
  return w;
}

// ‖W − U_r S_r V_rᵀ‖²_F in f64.
double truncation_err_sq(const std::vector<float>& w, const SvdResult& s, std::int64_t r) {
  double e = 0;
  for (std::int64_t i = 0; i < s.m; ++i)
    for (std::int64_t j = 0; j < s.n; ++j) {
      double acc = 0;
      for (std::int64_t t = 0; t < r; ++t)
        acc += static_cast<double>(s.U[static_cast<std::size_t>(i * s.k + t)]) *
               s.S[static_cast<std::size_t>(t)] * s.Vt[static_cast<std::size_t>(t * s.n + j)];
      const double d = w[static_cast<std::size_t>(i * s.n + j)] - acc;
      e += d * d;
    }
  return e;
}

}  // namespace

TEST_CASE("exact SVD singular values match f64 JacobiSVD", "[linalg][svd]") {
  constexpr double kTol =
      1e-5;  // relative, per singular value (well-conditioned) and vs σ_1 (decaying)
  SECTION("gaussian 200x80: every σ_i within 1e-5 relative") {
    const auto w = test::gaussian(200 * 80, 7);
    const auto s = exact_svd(w, 200, 80);
    const auto ref = jacobi_singular_values_f64(w, 200, 80);
    REQUIRE(s.k == 80);
    double worst = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, std::fabs(s.S[i] - ref[i]) / ref[i]);
    INFO("max |σ_i − σ_i,ref| / σ_i,ref = " << worst << " (backend " << exact_svd_backend() << ")");
    CHECK(worst <= kTol);
  }
  SECTION("decaying 96x160: |Δσ_i| <= 1e-5·σ_1, and for σ_i >= 1e-2·σ_1 relative 1e-5·σ_1/σ_i") {
    const auto w = decaying(96, 160, 11);
    const auto s = exact_svd(w, 96, 160);
    const auto ref = jacobi_singular_values_f64(w, 96, 160);
    double worst = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, std::fabs(s.S[i] - ref[i]) / ref[0]);
    INFO("max |Δσ_i| / σ_1 = " << worst);
    CHECK(worst <= kTol);
    const auto values = exact_singular_values(w, 96, 160);
    for (std::size_t i = 0; i < ref.size(); ++i)
      CHECK(std::fabs(values[i] - ref[i]) <= kTol * ref[0]);
  }
}

TEST_CASE("exact SVD: Eckart–Young and orthonormal factors", "[linalg][svd]") {
  constexpr double kTol = 1e-4;  // relative
  const std::int64_t m = 120, n = 72;
  const auto w = decaying(m, n, 21);
  const auto s = exact_svd(w, m, n);
  const auto ref = jacobi_singular_values_f64(w, m, n);
  for (std::int64_t r : {1, 8, 24}) {
    double opt = 0;
    for (std::size_t i = static_cast<std::size_t>(r); i < ref.size(); ++i)
      opt += ref[i] * ref[i];
    const double got = truncation_err_sq(w, s, r);
    INFO("r = " << r << ": ‖W − W_r‖² = " << got << ", Σ_{i>r} σ² = " << opt);
    CHECK(std::fabs(got - opt) <= kTol * opt);
  }
  // UᵀU = I
  double worst = 0;
  for (std::int64_t a = 0; a < s.k; ++a)
    for (std::int64_t b = 0; b < s.k; ++b) {
      double d = 0;
      for (std::int64_t i = 0; i < m; ++i)
        d += static_cast<double>(s.U[i * s.k + a]) * s.U[i * s.k + b];
      worst = std::max(worst, std::fabs(d - (a == b ? 1.0 : 0.0)));
    }
  INFO("max |UᵀU − I| = " << worst);
  CHECK(worst < 1e-4);
}

TEST_CASE("randomized SVD is near-optimal and deterministic", "[linalg][rsvd]") {
  const std::int64_t m = 1030, n = 120, r = 16;  // 1030 rows: three 512-row blocks
  const auto w = decaying(m, n, 31, 0.97);
  const auto ref = jacobi_singular_values_f64(w, m, n);
  RsvdOptions o;
  o.rank = r;
  o.stream = "layer.weight";
  const auto a = randomized_svd(w, m, n, o);
  double opt = 0;
  for (std::size_t i = r; i < ref.size(); ++i)
    opt += ref[i] * ref[i];
  const double ratio = std::sqrt(truncation_err_sq(w, a.svd, r) / opt);
  INFO("‖W − W_r‖_F / optimum = " << ratio);
  CHECK(ratio <= 1.01);
  for (std::int64_t i = 0; i < r; ++i)
    CHECK(std::fabs(a.svd.S[i] - ref[i]) <= 1e-2 * ref[i]);
  CHECK(a.sketch_sigma.size() == static_cast<std::size_t>(r + 10));
  CHECK(a.gemm_flops == Approx(2.0 * m * n * (r + 10) * 10));

  // A split across real threads gives the same bits as the serial run.
  RsvdOptions p = o;
  p.parallel = [](std::size_t count, std::size_t,
                  const std::function<void(std::size_t, std::size_t)>& body) {
    std::vector<std::thread> ts;
    for (std::size_t i = 0; i < count; ++i)
      ts.emplace_back([&body, i] { body(i, i + 1); });
    for (auto& t : ts)
      t.join();
  };
  const auto b = randomized_svd(w, m, n, p);
  CHECK(std::memcmp(a.svd.U.data(), b.svd.U.data(), a.svd.U.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(a.svd.Vt.data(), b.svd.Vt.data(), a.svd.Vt.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(a.svd.S.data(), b.svd.S.data(), a.svd.S.size() * sizeof(float)) == 0);

  // Another stream name draws another test matrix.
  RsvdOptions q = o;
  q.stream = "other.weight";
  const auto c = randomized_svd(w, m, n, q);
  CHECK(std::memcmp(a.svd.U.data(), c.svd.U.data(), a.svd.U.size() * sizeof(float)) != 0);
}

TEST_CASE("subtract_product: C −= s·A·B, same bits for any split", "[linalg]") {
  const std::int64_t m = 1030, k = 8, n = 40;
  const auto a = test::gaussian(m * k, 41), b = test::gaussian(k * n, 42),
             c0 = test::gaussian(m * n, 43);
  const auto p = matmul(a, b, m, k, n);
  auto c1 = c0, c2 = c0;
  subtract_product(c1, a, b, m, k, n, 2.0f);
  subtract_product(c2, a, b, m, k, n, 2.0f,
                   [](std::size_t count, std::size_t,
                      const std::function<void(std::size_t, std::size_t)>& body) {
                     std::vector<std::thread> ts;
                     for (std::size_t i = 0; i < count; ++i)
                       ts.emplace_back([&body, i] { body(i, i + 1); });
                     for (auto& t : ts)
                       t.join();
                   });
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
  double worst = 0;
  for (std::size_t i = 0; i < c0.size(); ++i)
    worst = std::max(worst, std::fabs(double(c1[i]) - (c0[i] - 2.0 * p[i])));
  INFO("max |C − (C0 − 2·A·B)| = " << worst);
  CHECK(worst < 1e-4);
}
