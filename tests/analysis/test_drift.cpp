// Drift: principal angles, intruder dimensions, SORSA ΔΣ / ΔD, ΔW ranks.
#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "ckptkit/analysis/drift.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"

using namespace ckpt;

namespace {

using MatD = Eigen::MatrixXd;

std::vector<float> gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed,
                            double scale = 1) {
  Rng rng(seed, "drift");
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  for (auto& x : v)
    x = static_cast<float>(scale * rng.normal());
  return v;
}

}  // namespace

TEST_CASE("principal angles of a subspace with itself are 0, of orthogonal ones 90") {
  const std::int64_t n = 30, k = 5;
  Rng rng(1, "angles");
  MatD a(n, 2 * k);
  for (auto i = 0; i < a.size(); ++i)
    a.data()[i] = rng.normal();
  const MatD Q = Eigen::HouseholderQR<MatD>(a).householderQ() * MatD::Identity(n, 2 * k);
  const MatD A = Q.leftCols(k), B = Q.rightCols(k);
  // The same subspace with a rotated basis.
  MatD r(k, k);
  for (auto i = 0; i < r.size(); ++i)
    r.data()[i] = rng.normal();
  const MatD R = Eigen::HouseholderQR<MatD>(r).householderQ();
  const MatD A2 = A * R;
  const auto same = principal_angles_deg(A.data(), A2.data(), n, k);
  const auto orth = principal_angles_deg(A.data(), B.data(), n, k);
  REQUIRE(same.size() == static_cast<std::size_t>(k));
  for (double d : same) {
    INFO("angle with itself " << d << " deg");
    CHECK(d < 1e-5);
  }
  for (double d : orth)
    CHECK(d == Approx(90).margin(1e-6));
}

TEST_CASE("W vs W: no drift, no intruders") {
  const auto w = gaussian(48, 32, 3);
  const DriftResult r = compute_drift({w.data(), 48, 32}, {w.data(), 48, 32});
  const DriftMetrics& d = r.drift;
  CHECK(d.rel_delta_fro == 0);
  CHECK(d.intruders.empty());
  for (double c : d.best_cos)
    CHECK(c == Approx(1).margin(1e-9));
  CHECK(d.sorsa_dsigma == 0);
  INFO("dD " << d.sorsa_dd);
  CHECK(d.sorsa_dd == Approx(0).margin(1e-9));
  for (double a : d.angles_left_deg)
    CHECK(a < 1e-4);
  CHECK(d.delta_alpha == 0);
}

TEST_CASE("a planted intruder W + s*u*v^T with u orthogonal to W's top vectors is found") {
  const std::int64_t m = 64, n = 40;
  // W with a decaying spectrum so its top left vectors are well separated.
  auto w = gaussian(m, n, 5, 0.05);
  SpectrumOptions o;
  o.vectors = true;
  const Spectrum s = compute_spectrum({w.data(), m, n}, o);
  const Eigen::Map<const MatD> U(s.u.data(), m, n);
  // u: a random unit vector with the components along W's left singular vectors removed, so it
  // lies in the orthogonal complement of range(W) (m > n leaves room) — best |cos| ≈ 0.
  Rng rng(6, "u");
  Eigen::VectorXd u(m), v(n);
  for (auto i = 0; i < m; ++i)
    u[i] = rng.normal();
  for (auto i = 0; i < n; ++i)
    v[i] = rng.normal();
  u -= U * (U.transpose() * u);
  u.normalize();
  v.normalize();
  const double strength = 10 * s.sigma[0];
  std::vector<float> ft = w;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      ft[static_cast<std::size_t>(i * n + j)] += static_cast<float>(strength * u[i] * v[j]);
  const DriftResult r = compute_drift({w.data(), m, n}, {ft.data(), m, n});
  const DriftMetrics& d = r.drift;
  INFO("intruders " << d.intruders.size() << ", best cos of top vector " << d.best_cos[0]);
  REQUIRE(d.intruders.size() >= 1);
  CHECK(d.intruders[0].index == 0);  // the planted direction is the new top singular vector
  CHECK(d.intruders[0].best_cos < 0.1);
  CHECK(d.intruders[0].sigma == Approx(strength).epsilon(0.01));
  // ΔW is exactly rank 1.
  CHECK(d.delta_rank99 == 1);
  CHECK(d.delta_stable_rank == Approx(1).epsilon(1e-4));
  CHECK(d.rel_delta_fro == Approx(strength / r.base_metrics.frobenius_norm).epsilon(1e-4));
  // The top-1 left subspace rotated by 90 degrees.
  CHECK(d.angles_left_deg.back() > 80);
  // Raising the threshold to 1.0 makes every tested vector an intruder only if no |cos| is 1.
  DriftOptions strict;
  strict.intruder_eps = 0.0;
  CHECK(compute_drift({w.data(), m, n}, {ft.data(), m, n}, strict).drift.intruders.empty());
}

TEST_CASE("SORSA dSigma is the mean absolute change of singular values") {
  const auto w = gaussian(30, 20, 8);
  std::vector<float> ft(w.size());
  for (std::size_t i = 0; i < w.size(); ++i)
    ft[i] = 1.5f * w[i];  // σ scale by 1.5, same vectors
  const DriftResult r = compute_drift({w.data(), 30, 20}, {ft.data(), 30, 20});
  double mean = 0;
  for (double s : r.base.sigma)
    mean += 0.5 * s;
  mean /= static_cast<double>(r.base.sigma.size());
  CHECK(r.drift.sorsa_dsigma == Approx(mean).epsilon(1e-6));
  CHECK(r.drift.sorsa_dd == Approx(0).margin(1e-6));
  CHECK(r.drift.rel_delta_fro == Approx(0.5).epsilon(1e-6));
  CHECK(r.drift.intruders.empty());
}

TEST_CASE("drift of matrices with different shapes is a format error") {
  const auto a = gaussian(6, 4, 1), b = gaussian(4, 6, 2);
  CHECK_THROWS_AS(compute_drift({a.data(), 6, 4}, {b.data(), 4, 6}), Error);
}
