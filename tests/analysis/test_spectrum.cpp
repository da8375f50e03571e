// Spectrum: singular values against an f64 JacobiSVD reference, the exact-route rule, metrics,
// the power-law fit and the Marchenko–Pastur edge.
#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "ckptkit/analysis/spectrum.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"

using namespace ckpt;

namespace {

using MatD = Eigen::MatrixXd;

/// A rows × cols f32 matrix U·diag(s)·Vᵀ with random orthonormal U, V (row-major).
std::vector<float> with_spectrum(std::int64_t rows, std::int64_t cols, const std::vector<double>& s,
                                 std::uint64_t seed) {
  Rng rng(seed, "with_spectrum");
  const std::int64_t k = static_cast<std::int64_t>(s.size());
  MatD a(rows, k), b(cols, k);
  for (auto i = 0; i < a.size(); ++i)
    a.data()[i] = rng.normal();
  for (auto i = 0; i < b.size(); ++i)
    b.data()[i] = rng.normal();
  const MatD U = Eigen::HouseholderQR<MatD>(a).householderQ() * MatD::Identity(rows, k);
  const MatD V = Eigen::HouseholderQR<MatD>(b).householderQ() * MatD::Identity(cols, k);
  Eigen::VectorXd sv(k);
  for (std::int64_t i = 0; i < k; ++i)
    sv[i] = s[static_cast<std::size_t>(i)];
  const MatD W = U * sv.asDiagonal() * V.transpose();
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j)
      out[static_cast<std::size_t>(i * cols + j)] = static_cast<float>(W(i, j));
  return out;
}

std::vector<float> gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed,
                            double scale = 1) {
  Rng rng(seed, "gaussian");
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  for (auto& x : v)
    x = static_cast<float>(scale * rng.normal());
  return v;
}

/// The f64 reference: JacobiSVD of the same f32 values.
std::vector<double> reference_sigma(const std::vector<float>& w, std::int64_t rows,
                                    std::int64_t cols) {
  MatD W(rows, cols);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j)
      W(i, j) = w[static_cast<std::size_t>(i * cols + j)];
  Eigen::JacobiSVD<MatD> svd(W);
  const auto& s = svd.singularValues();
  return {s.data(), s.data() + s.size()};
}

double max_rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  double err = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    err = std::max(err, std::abs(got[i] - want[i]));
  return err / want[0];
}

}  // namespace

TEST_CASE("singular values equal the f64 JacobiSVD reference within 1e-6 of sigma_1") {
  constexpr double kTol = 1e-6;
  struct Case {
    std::int64_t rows, cols;
  };
  for (const Case c : {Case{70, 40}, Case{40, 70}, Case{64, 64}}) {
    // Gaussian (well conditioned) and a graded spectrum spanning 1e-5 .. 10.
    const auto g = gaussian(c.rows, c.cols, 7 + c.rows);
    std::vector<double> graded;
    const std::int64_t k = std::min(c.rows, c.cols);
    for (std::int64_t i = 0; i < k; ++i)
      graded.push_back(10.0 * std::pow(1e-6, static_cast<double>(i) / (k - 1)));
    const auto h = with_spectrum(c.rows, c.cols, graded, 11);
    for (const auto* w : {&g, &h}) {
      const Spectrum s = compute_spectrum({w->data(), c.rows, c.cols});
      const auto ref = reference_sigma(*w, c.rows, c.cols);
      REQUIRE(s.sigma.size() == ref.size());
      const double err = max_rel_error(s.sigma, ref);
      INFO(c.rows << "x" << c.cols << " method " << s.method
                  << ": max |sigma - ref| / sigma_1 = " << err);
      CHECK(err < kTol);
      CHECK(std::is_sorted(s.sigma.rbegin(), s.sigma.rend()));
    }
  }
}

TEST_CASE("the Gram route is used for well-conditioned matrices, BDCSVD for rank-deficient ones") {
  const auto g = gaussian(50, 30, 3);
  CHECK(compute_spectrum({g.data(), 50, 30}).method == "gram-f64");
  // Rank 5 in a 50 x 30 matrix: σ_6.. are 0, below exact_below · σ_1.
  std::vector<double> s(30, 0.0);
  for (int i = 0; i < 5; ++i)
    s[static_cast<std::size_t>(i)] = 5.0 - i;
  const auto low = with_spectrum(50, 30, s, 5);
  const Spectrum e = compute_spectrum({low.data(), 50, 30});
  CHECK(e.method == "bdcsvd-f64");
  const double tail = e.sigma[5] / e.sigma[0];
  INFO("sigma_6/sigma_1 on the exact route = " << tail);
  CHECK(tail < 1e-6);  // the f32 rounding floor, not the Gram route's ~1e-8 noise floor squared
  SpectrumOptions never;
  never.exact_below = 0;
  CHECK(compute_spectrum({low.data(), 50, 30}, never).method == "gram-f64");
}

TEST_CASE("singular vectors from the Gram route reconstruct W") {
  for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{40, 25}, {25, 40}}) {
    const auto g = gaussian(rows, cols, 9);
    SpectrumOptions o;
    o.vectors = true;
    const Spectrum s = compute_spectrum({g.data(), rows, cols}, o);
    const std::int64_t k = std::min(rows, cols);
    const Eigen::Map<const MatD> U(s.u.data(), rows, k), V(s.v.data(), cols, k);
    Eigen::VectorXd sv = Eigen::Map<const Eigen::VectorXd>(s.sigma.data(), k);
    const MatD W = U * sv.asDiagonal() * V.transpose();
    double err = 0;
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        err = std::max(err, std::abs(W(i, j) - g[static_cast<std::size_t>(i * cols + j)]));
    const double orth = (U.transpose() * U - MatD::Identity(k, k)).cwiseAbs().maxCoeff();
    INFO(rows << "x" << cols << ": max reconstruction error " << err << ", max |UᵀU - I| " << orth);
    CHECK(err < 1e-6 * s.sigma[0]);
    CHECK(orth < 1e-8);
  }
}

TEST_CASE("non-finite input is a numeric error, an empty matrix a usage error") {
  std::vector<float> w(12, 1.0f);
  w[5] = std::nanf("");
  CHECK_THROWS_AS(compute_spectrum({w.data(), 3, 4}), Error);
  try {
    compute_spectrum({w.data(), 3, 4});
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Numeric);
  }
  CHECK_THROWS_AS(compute_spectrum({w.data(), 0, 4}), Error);
}

TEST_CASE("power-law alpha recovers the exponent of synthetic eigenvalues within 0.05") {
  constexpr double kTol = 0.05;
  for (double alpha : {2.0, 2.5, 3.5, 5.0}) {
    // Inverse-CDF draws from p(λ) ∝ λ^-α on [1, ∞), stratified (one uniform draw in each of n
    // equal slices of [0, 1)) so that sampling noise stays well under the tolerance, plus a bulk
    // below xmin that the KS choice of xmin must cut off.
    Rng rng(42, "powerlaw");
    std::vector<double> ev;
    const int n = 4000;
    for (int i = 0; i < n; ++i)
      ev.push_back(std::pow(1 - (i + rng.uniform()) / n, -1.0 / (alpha - 1)));
    for (int i = 0; i < 2000; ++i)
      ev.push_back(0.05 + 0.9 * rng.uniform());
    const PowerLawFit f = fit_power_law(ev);
    INFO("true alpha " << alpha << ": fitted " << f.alpha << " +- " << f.sigma_alpha << ", xmin "
                       << f.xmin << ", n_tail " << f.n_tail << ", D " << f.D);
    REQUIRE(f.ok);
    CHECK(std::abs(f.alpha - alpha) < kTol);
    CHECK(f.xmin > 0.9);  // the bulk was cut off
    CHECK(f.D < 0.05);
  }
  CHECK_FALSE(fit_power_law({1, 2, 3}).ok);  // fewer than min_evals
}

TEST_CASE("metrics of a known spectrum") {
  const std::vector<double> s = {4, 2, 2, 1, 0};  // energies 16, 4, 4, 1, 0 (total 25)
  const SpectrumMetrics m = spectrum_metrics(s, 8, 5);
  CHECK(m.spectral_norm == 4);
  CHECK(m.frobenius_norm == Approx(5));
  CHECK(m.stable_rank == Approx(25.0 / 16));
  CHECK(m.energy_rank50 == 1);  // 16/25 = 0.64 ≥ 0.5
  CHECK(m.energy_rank90 == 3);  // 24/25 = 0.96
  CHECK(m.energy_rank99 == 4);
  CHECK(std::isinf(m.condition_number));
  CHECK(m.numerical_rank == 4);
  // Effective rank of equal singular values is their count.
  CHECK(spectrum_metrics({3, 3, 3}, 3, 3).effective_rank == Approx(3));
  CHECK(spectrum_metrics({3, 3, 3}, 3, 3).entropy == Approx(1));
  const auto c = energy_curve(s);
  CHECK(c.back() == Approx(1));
  CHECK(c[0] == Approx(0.64));
}

TEST_CASE("Marchenko-Pastur: a Gaussian matrix has no spikes, a planted rank-3 signal has 3") {
  const std::int64_t m = 300, n = 120;
  const double s2 = 0.01;
  auto g = gaussian(m, n, 21, std::sqrt(s2));
  const Spectrum s = compute_spectrum({g.data(), m, n});
  const MarchenkoPastur mp = marchenko_pastur(s.sigma, m, n);
  const double edge = std::sqrt(s2) * (std::sqrt(300.0) + std::sqrt(120.0));
  INFO("estimated s2 " << mp.sigma2 << " (true " << s2 << "), edge " << mp.edge_sigma << " (theory "
                       << edge << "), sigma_1 " << s.sigma[0]);
  CHECK(mp.spikes == 0);
  CHECK(mp.sigma2 == Approx(s2).epsilon(0.05));
  CHECK(mp.edge_sigma == Approx(edge).epsilon(0.05));
  // Plant three directions well above the edge.
  std::vector<double> planted(static_cast<std::size_t>(n), 0.0);
  planted[0] = 5 * edge, planted[1] = 4 * edge, planted[2] = 3 * edge;
  const auto p = with_spectrum(m, n, planted, 8);
  for (std::size_t i = 0; i < g.size(); ++i)
    g[i] += p[i];
  const Spectrum s2p = compute_spectrum({g.data(), m, n});
  const MarchenkoPastur mp2 = marchenko_pastur(s2p.sigma, m, n);
  INFO("with 3 planted: spikes " << mp2.spikes << ", s2 " << mp2.sigma2);
  CHECK(mp2.spikes == 3);
  CHECK(mp2.sigma2 == Approx(s2).epsilon(0.05));
}
