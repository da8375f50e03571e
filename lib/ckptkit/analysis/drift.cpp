#include "ckptkit/analysis/drift.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numbers>

#include "ckptkit/core/error.hpp"

namespace ckpt {

namespace {

using MatD = Eigen::MatrixXd;
using MapD = Eigen::Map<const MatD>;

}  // namespace

std::vector<double> principal_angles_deg(const double* a, const double* b, std::int64_t n,
                                         std::int64_t k) {
  if (k <= 0) return {};
  const MapD A(a, n, k), B(b, n, k);
  const MatD M = A.transpose() * B;
  Eigen::JacobiSVD<MatD> svd(M);
  std::vector<double> out;
  // Singular values of AᵀB are the cosines, descending → angles ascending. Clamped: rounding can
  // push a cosine of 1 just above it.
  for (Eigen::Index i = 0; i < svd.singularValues().size(); ++i)
    out.push_back(std::acos(std::clamp(svd.singularValues()[i], 0.0, 1.0)) * 180.0 /
                  std::numbers::pi);
  return out;
}

std::vector<double> best_abs_cos(const double* tuned, std::int64_t k, const double* base,
                                 std::int64_t kb, std::int64_t n) {
  const MapD T(tuned, n, k), B(base, n, kb);
  const MatD C = (B.transpose() * T).cwiseAbs();  // kb × k
  std::vector<double> out(static_cast<std::size_t>(k));
  for (std::int64_t j = 0; j < k; ++j)
    out[static_cast<std::size_t>(j)] = C.col(j).maxCoeff();
  return out;
}

DriftResult compute_drift(const MatrixRef& base, const MatrixRef& ft, const DriftOptions& options) {
  if (base.rows != ft.rows || base.cols != ft.cols)
    fail(ErrorKind::Format, "shapes differ: [" + std::to_string(base.rows) + ", " +
                                std::to_string(base.cols) + "] vs [" + std::to_string(ft.rows) +
                                ", " + std::to_string(ft.cols) + "]");
  const std::int64_t m = base.rows, n = base.cols, k = std::min(m, n);
  DriftResult r;
  SpectrumOptions with_vectors;
  with_vectors.vectors = true;
  r.base = compute_spectrum(base, with_vectors);
  r.ft = compute_spectrum(ft, with_vectors);
  r.base_metrics = spectrum_metrics(r.base.sigma, m, n);
  r.ft_metrics = spectrum_metrics(r.ft.sigma, m, n);

  // ΔW: only its values are needed (ranks relative to its own σ₁), so no exact re-run.
  std::vector<float> delta(static_cast<std::size_t>(m * n));
  for (std::size_t i = 0; i < delta.size(); ++i)
    delta[i] = ft.data[i] - base.data[i];
  SpectrumOptions values_only;
  values_only.exact_below = 0;
  DriftMetrics& d = r.drift;
  d.sigma_delta = compute_spectrum({delta.data(), m, n}, values_only).sigma;
  const SpectrumMetrics dm = spectrum_metrics(d.sigma_delta, m, n);
  d.delta_fro = dm.frobenius_norm;
  d.delta_spectral = dm.spectral_norm;
  d.delta_stable_rank = dm.stable_rank;
  d.delta_rank50 = dm.energy_rank50;
  d.delta_rank90 = dm.energy_rank90;
  d.delta_rank99 = dm.energy_rank99;
  d.rel_delta_fro =
      r.base_metrics.frobenius_norm > 0 ? dm.frobenius_norm / r.base_metrics.frobenius_norm : 0;

  d.angles_k = static_cast<int>(std::min<std::int64_t>(options.angles_k, k));
  d.angles_left_deg = principal_angles_deg(r.base.u.data(), r.ft.u.data(), m, d.angles_k);
  d.angles_right_deg = principal_angles_deg(r.base.v.data(), r.ft.v.data(), n, d.angles_k);

  const std::int64_t ik = std::min<std::int64_t>(std::max(0, options.intruder_k), k);
  d.best_cos = best_abs_cos(r.ft.u.data(), ik, r.base.u.data(), k, m);
  for (std::int64_t j = 0; j < ik; ++j)
    if (d.best_cos[static_cast<std::size_t>(j)] < options.intruder_eps)
      d.intruders.push_back({static_cast<int>(j), r.ft.sigma[static_cast<std::size_t>(j)],
                             d.best_cos[static_cast<std::size_t>(j)]});

  // SORSA: index-matched over all k singular triplets.
  const MapD U0(r.base.u.data(), m, k), Ut(r.ft.u.data(), m, k);
  const MapD V0(r.base.v.data(), n, k), Vt(r.ft.v.data(), n, k);
  double ds = 0, cu = 0, cv = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    ds += std::abs(r.ft.sigma[static_cast<std::size_t>(i)] -
                   r.base.sigma[static_cast<std::size_t>(i)]);
    cu += std::abs(U0.col(i).dot(Ut.col(i)));
    cv += std::abs(V0.col(i).dot(Vt.col(i)));
  }
  d.sorsa_dsigma = ds / static_cast<double>(k);
  d.sorsa_dd = 1 - 0.5 * (cu / static_cast<double>(k) + cv / static_cast<double>(k));

  d.alpha_base = r.base_metrics.alpha.ok ? r.base_metrics.alpha.alpha : 0;
  d.alpha_ft = r.ft_metrics.alpha.ok ? r.ft_metrics.alpha.alpha : 0;
  d.delta_alpha =
      (r.base_metrics.alpha.ok && r.ft_metrics.alpha.ok) ? d.alpha_ft - d.alpha_base : 0;
  return r;
}

}  // namespace ckpt
