// How far a fine-tuned matrix W_t moved from its base W_0, per matrix
// (../shared/research/tensor-spectral-anchors.md §3.2-3.3, peft-anchors.md §1.12, §6):
//   - ‖ΔW‖_F/‖W_0‖_F, and the stable and energy ranks of ΔW = W_t − W_0;
//   - principal angles between the top-k left (and right) singular subspaces of W_0 and W_t;
//   - intruder dimensions: among the top `intruder_k` LEFT singular vectors y_j of W_t, those whose
//     best |cos| with any of the min(m, n) left singular vectors of W_0 is < `intruder_eps`
//     (Shuttleworth et al.; the official code and PEFT's reduce_intruder_dimension use k = 10,
//     ε = 0.5, left vectors, absolute cosine);
//   - SORSA's ΔΣ = mean_i |σ_i(W_t) − σ_i(W_0)| over all singular values and
//     ΔD = 1 − ½(mean_i |⟨u_i^t, u_i^0⟩| + mean_i |⟨v_i^t, v_i^0⟩|), index-matched;
//   - Δα, the change of the WeightWatcher power-law exponent.
#pragma once

#include <cstdint>
#include <vector>

#include "ckptkit/analysis/spectrum.hpp"

namespace ckpt {

struct DriftOptions {
  int intruder_k = 10;        ///< how many top fine-tuned left vectors are tested
  double intruder_eps = 0.5;  ///< a vector is an intruder when its best |cos| is below this
  int angles_k = 16;          ///< dimension of the subspaces compared by principal angles
};

/// One intruder: index j (0-based rank in W_t), its σ_j and its best |cos| with a base vector.
struct Intruder {
  int index = 0;
  double sigma = 0;
  double best_cos = 0;
};

struct DriftMetrics {
  double rel_delta_fro = 0;      ///< ‖ΔW‖_F / ‖W_0‖_F
  double delta_fro = 0;          ///< ‖ΔW‖_F
  double delta_spectral = 0;     ///< ‖ΔW‖₂
  double delta_stable_rank = 0;  ///< ‖ΔW‖_F² / ‖ΔW‖₂²
  std::int64_t delta_rank50 = 0, delta_rank90 = 0, delta_rank99 = 0;  ///< energy ranks of ΔW
  int angles_k = 0;                     ///< k actually used (≤ min(m, n))
  std::vector<double> angles_left_deg;  ///< principal angles, ascending, degrees
  std::vector<double> angles_right_deg;
  std::vector<double> best_cos;  ///< per tested top vector of W_t (intruder_k of them)
  std::vector<Intruder> intruders;
  double sorsa_dsigma = 0;                               ///< ΔΣ
  double sorsa_dd = 0;                                   ///< ΔD
  double alpha_base = 0, alpha_ft = 0, delta_alpha = 0;  ///< α(W_t) − α(W_0) (0 when a fit failed)
  std::vector<double> sigma_delta;                       ///< singular values of ΔW
};

/// The spectra of base and fine-tuned matrices with vectors, and of their difference.
struct DriftResult {
  Spectrum base, ft;
  SpectrumMetrics base_metrics, ft_metrics;
  DriftMetrics drift;
};

/// Compares W_t (`ft`) with W_0 (`base`): same shape, checked (Error(Format) otherwise).
DriftResult compute_drift(const MatrixRef& base, const MatrixRef& ft,
                          const DriftOptions& options = {});

/// Principal angles (degrees, ascending) between the spans of the first k columns of two
/// column-major matrices with orthonormal columns (n rows each).
std::vector<double> principal_angles_deg(const double* a, const double* b, std::int64_t n,
                                         std::int64_t k);

/// For each of the first `k` columns of `tuned` (n × ≥k), the best |cos| with any of the `kb`
/// columns of `base` (n × kb). Columns are unit vectors (or zero).
std::vector<double> best_abs_cos(const double* tuned, std::int64_t k, const double* base,
                                 std::int64_t kb, std::int64_t n);

}  // namespace ckpt
