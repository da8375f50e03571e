#include "ckptkit/analysis/spectrum.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>

#include "ckptkit/core/error.hpp"
#include "ckptkit/linalg/symeig.hpp"

namespace ckpt {

namespace {

using MatD = Eigen::MatrixXd;
using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

MatD to_f64(const MatrixRef& w) {
  return Eigen::Map<const RowMatF>(w.data, w.rows, w.cols).cast<double>();
}

/// True when no value is NaN or ±inf (an integer OR reduction, which vectorises).
bool all_finite(std::span<const float> v) {
  int bad = 0;
  for (float x : v)
    bad |= !(std::fabs(x) <= std::numeric_limits<float>::max());
  return bad == 0;
}

/// Singular values and (optionally) vectors by BDCSVD on W itself (no squaring).
Spectrum exact_route(const MatD& W, bool vectors) {
  Spectrum s;
  const unsigned opts = vectors ? (Eigen::ComputeThinU | Eigen::ComputeThinV) : 0u;
  Eigen::BDCSVD<MatD> svd(W, opts);
  const auto& sv = svd.singularValues();
  s.sigma.assign(sv.data(), sv.data() + sv.size());
  s.method = "bdcsvd-f64";
  if (vectors) {
    s.u.assign(svd.matrixU().data(), svd.matrixU().data() + svd.matrixU().size());
    s.v.assign(svd.matrixV().data(), svd.matrixV().data() + svd.matrixV().size());
  }
  return s;
}

/// The other side's singular vectors from one side's: X_i = W·Y_i/σ_i, renormalised. Vectors of
/// σ_i ≤ 1e-12·σ₁ are left zero (they are undefined to working precision).
MatD derive_vectors(const MatD& WY, const std::vector<double>& sigma) {
  MatD X = WY;
  const double tiny = sigma.empty() ? 0 : 1e-12 * sigma[0];
  for (Eigen::Index i = 0; i < X.cols(); ++i) {
    const double nrm = X.col(i).norm();
    if (sigma[i] <= tiny || nrm == 0)
      X.col(i).setZero();
    else
      X.col(i) /= nrm;
  }
  return X;
}

}  // namespace

Spectrum compute_spectrum(const MatrixRef& w, const SpectrumOptions& options) {
  if (w.rows <= 0 || w.cols <= 0 || !w.data) fail(ErrorKind::Usage, "spectrum of an empty matrix");
  const std::span<const float> values(w.data, static_cast<std::size_t>(w.rows * w.cols));
  if (!all_finite(values)) fail(ErrorKind::Numeric, "matrix has non-finite values");
  const bool tall = w.rows >= w.cols;  // Gram on the smaller side: WᵀW (cols²) when tall
  const Eigen::Index k = std::min(w.rows, w.cols);
  // LAPACK dsyevd on the lower triangle formed by dsyrk (linalg/symeig.hpp).
  SymMatrix g = gram_f64(values, w.rows, w.cols);
  std::vector<double> lambda =
      options.vectors ? symmetric_eigen(g) : symmetric_eigenvalues(std::move(g));
  Spectrum s;
  s.rows = w.rows, s.cols = w.cols;
  s.method = "gram-f64";
  s.sigma.resize(static_cast<std::size_t>(k));
  // Eigenvalues come ascending; tiny negative ones are rounding of zero.
  for (Eigen::Index i = 0; i < k; ++i)
    s.sigma[static_cast<std::size_t>(i)] =
        std::sqrt(std::max(0.0, lambda[static_cast<std::size_t>(k - 1 - i)]));
  const double smin = s.sigma.back(), smax = s.sigma.front();
  if (options.exact_below > 0 && smax > 0 && smin < options.exact_below * smax) {
    Spectrum e = exact_route(to_f64(w), options.vectors);
    e.rows = w.rows, e.cols = w.cols;
    return e;
  }
  if (options.vectors) {
    const MatD Y = Eigen::Map<const MatD>(g.a.data(), k, k).rowwise().reverse();  // descending
    const MatD W = to_f64(w);
    const MatD X = derive_vectors(tall ? MatD(W * Y) : MatD(W.transpose() * Y), s.sigma);
    const MatD& U = tall ? X : Y;
    const MatD& V = tall ? Y : X;
    s.u.assign(U.data(), U.data() + U.size());
    s.v.assign(V.data(), V.data() + V.size());
  }
  if (smax == 0) s.sigma.assign(s.sigma.size(), 0.0);
  return s;
}

namespace {

/// exp(x) for x ≤ 0 in plain arithmetic that the compiler vectorises (glibc's exp is a scalar
/// call): x = k·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2), e^r by its Taylor series to
/// degree 13 (truncation < 5e-18 relative), times 2^k built in the exponent bits. Relative error a
/// few ulp; x < −708 returns e^−708 ≈ 3e-308 (0 to the KS statistic's precision).
inline double exp_nonpositive(double x) {
  x = x < -708.0 ? -708.0 : x;
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShift = 0x1.8p52;  // adding it rounds to an integer in the low mantissa bits
  const double t = x * kLog2e + kShift;
  const double kd = t - kShift;
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // k + 1023 ∈ [1, 1023] sits in the low 11 mantissa bits of t + 1023: the biased exponent of 2^k.
  const std::uint64_t biased = std::bit_cast<std::uint64_t>(t + 1023.0) & 0x7FFu;
  return p * std::bit_cast<double>(biased << 52);
}

/// KS distance of the tail logs[i..N) (ascending ln λ) against the power law with exponent α
/// from xmin = λ_i: max_j |1 − (λ_j/λ_i)^(1−α) − (j−i)/n|, n = N − i. Scans blocks of 64 and
/// stops once the running maximum exceeds `bound` (the value is then only known to be > bound).
double ks_distance(const std::vector<double>& logs, std::int64_t i, double alpha, double bound) {
  const std::int64_t N = static_cast<std::int64_t>(logs.size());
  const double n = static_cast<double>(N - i), c = 1 - alpha,
               li = logs[static_cast<std::size_t>(i)];
  const double* L = logs.data();
  constexpr int kLanes = 8;
  constexpr std::int64_t kBlock = 64;
  double lane[kLanes] = {};
  double d = 0;
  for (std::int64_t b = i; b < N; b += kBlock) {
    const std::int64_t e = std::min(N, b + kBlock);
    std::int64_t j = b;
    for (; j + kLanes <= e; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const double theory = 1 - exp_nonpositive(c * (L[j + l] - li));
        const double v = std::abs(theory - static_cast<double>(j + l - i) / n);
        lane[l] = lane[l] > v ? lane[l] : v;
      }
    for (; j < e; ++j) {
      const double theory = 1 - exp_nonpositive(c * (L[j] - li));
      d = std::max(d, std::abs(theory - static_cast<double>(j - i) / n));
    }
    for (double x : lane)
      d = std::max(d, x);
    if (d > bound) break;
  }
  return d;
}

}  // namespace

PowerLawFit fit_power_law(std::vector<double> ev, std::int64_t min_evals) {
  PowerLawFit f;
  std::erase_if(ev, [](double x) { return !(x > 0) || !std::isfinite(x); });
  std::sort(ev.begin(), ev.end());
  const std::int64_t N = static_cast<std::int64_t>(ev.size());
  if (N < std::max<std::int64_t>(min_evals, 2)) return f;
  std::vector<double> logs(ev.size()), suffix(ev.size() + 1, 0.0);
  for (std::int64_t i = 0; i < N; ++i)
    logs[i] = std::log(ev[i]);
  for (std::int64_t i = N - 1; i >= 0; --i)
    suffix[i] = suffix[i + 1] + logs[i];
  // Candidate xmin = ev[i]: α by Hill's MLE (O(1) with the suffix sums), D by a vectorised scan.
  auto alpha_at = [&](std::int64_t i) {
    const double n = static_cast<double>(N - i);
    const double denom = suffix[i] - n * logs[i];
    return denom > 0 ? 1 + n / denom : 0.0;  // 0: no valid fit (all tail values equal)
  };
  // WeightWatcher takes the first xmin with the smallest D (np.argmin). A coarse grid of
  // candidates first gives a good bound early; then every candidate's scan stops as soon as its D
  // exceeds the best so far (it cannot win). Ties keep the smaller index, so the winner is exactly
  // the sequential argmin.
  double best_d = std::numeric_limits<double>::infinity();
  std::int64_t best_i = -1;
  double best_alpha = 0;
  auto consider = [&](std::int64_t i) {
    const double alpha = alpha_at(i);
    if (!(alpha > 1)) return;
    const double d = ks_distance(logs, i, alpha, best_d);
    if (d < best_d || (d == best_d && i < best_i)) best_d = d, best_i = i, best_alpha = alpha;
  };
  const std::int64_t grid = std::max<std::int64_t>(1, (N - 1) / 64);
  for (std::int64_t i = 0; i + 1 < N; i += grid)
    consider(i);
  for (std::int64_t i = 0; i + 1 < N; ++i)
    if (grid > 1 && i % grid != 0) consider(i);
  if (best_i >= 0) {
    f.ok = true;
    f.alpha = best_alpha;
    f.xmin = ev[static_cast<std::size_t>(best_i)];
    f.D = best_d;
    f.n_tail = N - best_i;
  }
  if (f.ok) f.sigma_alpha = (f.alpha - 1) / std::sqrt(static_cast<double>(f.n_tail));
  return f;
}

MarchenkoPastur marchenko_pastur(const std::vector<double>& sigma, std::int64_t rows,
                                 std::int64_t cols) {
  MarchenkoPastur mp;
  const double N = static_cast<double>(std::max(rows, cols));
  const double M = static_cast<double>(std::min(rows, cols));
  if (sigma.empty() || sigma.front() <= 0) return mp;
  const double edge_factor = (std::sqrt(N) + std::sqrt(M)) * (std::sqrt(N) + std::sqrt(M));
  const double tw_factor =
      (std::sqrt(N) + std::sqrt(M)) * std::cbrt(1 / std::sqrt(N) + 1 / std::sqrt(M));
  // σ descending: the bulk is a suffix. Start from everything and peel the spikes off.
  std::int64_t spikes = 0;
  double s2 = 0, threshold = 0;
  for (int iter = 0; iter < 50; ++iter) {
    double sum = 0;
    for (std::size_t i = static_cast<std::size_t>(spikes); i < sigma.size(); ++i)
      sum += sigma[i] * sigma[i];
    const double bulk = static_cast<double>(sigma.size()) - static_cast<double>(spikes);
    if (bulk <= 0) break;
    s2 = sum / bulk / N;
    threshold = s2 * edge_factor + s2 * tw_factor;
    std::int64_t next = 0;
    while (next < static_cast<std::int64_t>(sigma.size()) &&
           sigma[static_cast<std::size_t>(next)] * sigma[static_cast<std::size_t>(next)] >
               threshold)
      ++next;
    if (next == spikes) break;
    spikes = next;
  }
  mp.sigma2 = s2;
  mp.edge_sigma = std::sqrt(s2 * edge_factor);
  mp.spikes = spikes;
  mp.softrank = s2 * edge_factor / (sigma.front() * sigma.front());
  return mp;
}

std::int64_t energy_rank(const std::vector<double>& sigma, double q) {
  double total = 0;
  for (double s : sigma)
    total += s * s;
  if (total <= 0) return 0;
  double acc = 0;
  for (std::size_t i = 0; i < sigma.size(); ++i) {
    acc += sigma[i] * sigma[i];
    // A relative slack keeps q = 1 reachable despite rounding of the running sum.
    if (acc >= q * total * (1 - 1e-12)) return static_cast<std::int64_t>(i + 1);
  }
  return static_cast<std::int64_t>(sigma.size());
}

std::vector<double> energy_curve(const std::vector<double>& sigma) {
  std::vector<double> c(sigma.size());
  double total = 0, acc = 0;
  for (double s : sigma)
    total += s * s;
  for (std::size_t i = 0; i < sigma.size(); ++i) {
    acc += sigma[i] * sigma[i];
    c[i] = total > 0 ? acc / total : 0;
  }
  return c;
}

SpectrumMetrics spectrum_metrics(const std::vector<double>& sigma, std::int64_t rows,
                                 std::int64_t cols) {
  SpectrumMetrics m;
  if (sigma.empty()) return m;
  double sum_s = 0, sum_s2 = 0;
  for (double s : sigma)
    sum_s += s, sum_s2 += s * s;
  m.spectral_norm = sigma.front();
  m.frobenius_norm = std::sqrt(sum_s2);
  if (sum_s2 <= 0) return m;
  const double lmax = sigma.front() * sigma.front();
  m.stable_rank = sum_s2 / lmax;
  double h1 = 0, h2 = 0;
  for (double s : sigma) {
    if (s <= 0) continue;
    const double p1 = s / sum_s, p2 = s * s / sum_s2;
    h1 -= p1 * std::log(p1);
    h2 -= p2 * std::log(p2);
  }
  m.effective_rank = std::exp(h1);
  m.entropy = sigma.size() > 1 ? h2 / std::log(static_cast<double>(sigma.size())) : 0;
  m.energy_rank50 = energy_rank(sigma, 0.5);
  m.energy_rank90 = energy_rank(sigma, 0.9);
  m.energy_rank99 = energy_rank(sigma, 0.99);
  m.condition_number =
      sigma.back() > 0 ? sigma.front() / sigma.back() : std::numeric_limits<double>::infinity();
  const double tol = sigma.front() * static_cast<double>(std::max(rows, cols)) *
                     static_cast<double>(std::numeric_limits<float>::epsilon());
  m.numerical_rank = std::count_if(sigma.begin(), sigma.end(), [&](double s) { return s > tol; });
  std::vector<double> ev(sigma.size());
  for (std::size_t i = 0; i < sigma.size(); ++i)
    ev[i] = sigma[i] * sigma[i];
  // Eigenvalues at rounding level of zero would dominate ln λ: keep those above λ_max·1e-14.
  std::erase_if(ev, [&](double x) { return x <= lmax * 1e-14; });
  m.alpha = fit_power_law(std::move(ev));
  m.log_norm = std::log10(sum_s2);
  m.log_spectral_norm = std::log10(lmax);
  m.alpha_weighted = m.alpha.ok ? m.alpha.alpha * m.log_spectral_norm : 0;
  m.mp = marchenko_pastur(sigma, rows, cols);
  return m;
}

}  // namespace ckpt
