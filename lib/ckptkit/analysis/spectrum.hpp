// Singular value spectra of weight matrices and the metrics WeightWatcher reports on them
// (../shared/research/tensor-spectral-anchors.md §3.1), without WeightWatcher's size cap.
//
// How the spectrum is computed (docs/analyze-spectrum.md, "Accuracy"):
//   σ_i² are the eigenvalues of the smaller Gram matrix G = WᵀW or WWᵀ (k × k, k = min(m, n)),
//   formed and diagonalised in f64. The Gram route squares the condition number: the absolute
//   error of each λ_i = σ_i² is about ε₆₄·λ₁·c (c a small multiple of √k), so
//     |δσ_i| ≈ ε₆₄·c·σ₁² / (2σ_i)   for σ_i well above √(ε₆₄·c)·σ₁ ≈ 1e-7·σ₁, and
//     |δσ_i| ≤ √(ε₆₄·c)·σ₁ ≈ 1e-7·σ₁ for the smallest ones.
//   Every σ is therefore within ~1e-7·σ₁ of the exact value, below the f32 input's own resolution
//   (ε₃₂·‖W‖ ≈ 6e-8·σ₁·√k) — accurate enough for every metric relative to σ₁ (norms, ranks, α, MP).
//   Only *relative* accuracy of tiny σ suffers, which matters for one metric: the condition
//   number σ₁/σ_min. Rule: when σ_min/σ₁ from the Gram route is below `exact_below` (default 1e-6,
//   where its relative error could exceed ~10%), the spectrum is recomputed with Eigen's BDCSVD in
//   f64 directly on W (no squaring), and `method` says "bdcsvd-f64". Real trained weights almost
//   never trigger this; rank-deficient ones (low-rank deltas, tied/padded rows) do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ckpt {

/// A dense row-major f32 matrix owned elsewhere: rows × cols (safetensors [out, in] order).
struct MatrixRef {
  const float* data = nullptr;
  std::int64_t rows = 0, cols = 0;
};

struct SpectrumOptions {
  /// Recompute with BDCSVD (f64) when σ_min/σ₁ < exact_below; 0 never does (values are still
  /// accurate to ~1e-7·σ₁, only the condition number loses relative accuracy).
  double exact_below = 1e-6;
  /// Also return singular vectors (left: rows × k, right: cols × k, column-major f64).
  bool vectors = false;
};

/// The singular values (descending, all k = min(rows, cols) of them) and optionally vectors.
struct Spectrum {
  std::vector<double> sigma;
  std::string method;  ///< "gram-f64" or "bdcsvd-f64"
  std::int64_t rows = 0, cols = 0;
  std::vector<double> u;  ///< rows × k, column-major, when vectors were asked for
  std::vector<double> v;  ///< cols × k, column-major
};

/// The full spectrum of `w` (see the header comment for the rule). Throws Error(Numeric) when the
/// matrix has non-finite values, Error(Usage) when it is empty.
Spectrum compute_spectrum(const MatrixRef& w, const SpectrumOptions& options = {});

/// Power-law fit of an empirical spectral density tail as WeightWatcher's WWFit does it: for every
/// candidate xmin (each sorted eigenvalue but the largest), Hill's MLE α = 1 + n / Σ ln(λ_i/xmin)
/// over λ_i ≥ xmin (O(1) per xmin with suffix sums of ln λ), the KS distance
/// D = max |1 − (λ/xmin)^(1−α) − i/n| over the tail (O(n) per xmin), and the xmin with the
/// smallest D. σ_α = (α − 1)/√n.
struct PowerLawFit {
  bool ok = false;  ///< false when fewer than `min_evals` positive eigenvalues
  double alpha = 0;
  double xmin = 0;
  double D = 1;             ///< KS distance at the chosen xmin
  double sigma_alpha = 0;   ///< (α − 1)/√n_tail
  std::int64_t n_tail = 0;  ///< eigenvalues ≥ xmin
};

/// Fits the tail of `eigenvalues` (any order; values ≤ 0 are ignored). `min_evals` as WW (10).
PowerLawFit fit_power_law(std::vector<double> eigenvalues, std::int64_t min_evals = 10);

/// Marchenko–Pastur bulk edge and the spikes above it, for an m × n matrix with singular values σ.
/// Noise variance estimate s² (documented in docs/analyze-spectrum.md): the mean bulk eigenvalue
/// of WᵀW divided by N = max(m, n) (E[λ] = N·s² for an i.i.d. matrix), starting from the whole
/// spectrum and iterating with the eigenvalues above the edge removed until the spike count is
/// stable. Edge λ₊ = s²(√N + √M)²; a spike is λ > λ₊ + s²(√N + √M)(1/√N + 1/√M)^(1/3)
/// (the Tracy–Widom scale of the largest bulk eigenvalue).
struct MarchenkoPastur {
  double sigma2 = 0;        ///< s², per-entry noise variance of the bulk
  double edge_sigma = 0;    ///< √λ₊, the bulk's largest singular value
  std::int64_t spikes = 0;  ///< singular values above the edge (+ TW margin)
  double softrank = 0;      ///< λ₊ / λ_max (WeightWatcher's mp_softrank)
};
MarchenkoPastur marchenko_pastur(const std::vector<double>& sigma, std::int64_t rows,
                                 std::int64_t cols);

/// Metrics of one spectrum (σ descending).
struct SpectrumMetrics {
  double spectral_norm = 0;   ///< σ₁
  double frobenius_norm = 0;  ///< √Σσ²
  double stable_rank = 0;     ///< Σσ² / σ₁²
  double effective_rank = 0;  ///< exp(entropy of p_i = σ_i/Σσ) (Roy & Vetterli 2007)
  double entropy = 0;         ///< WW: −Σ p log p / log(k) with p_i = σ_i²/Σσ²
  std::int64_t energy_rank50 = 0, energy_rank90 = 0,
               energy_rank99 = 0;   ///< smallest r with ≥ q of Σσ²
  double condition_number = 0;      ///< σ₁/σ_min (inf when σ_min = 0)
  std::int64_t numerical_rank = 0;  ///< σ > σ₁·max(m,n)·ε₃₂ (the f32 input's resolution)
  PowerLawFit alpha;                ///< of λ = σ²
  double alpha_weighted = 0;        ///< α·log10 λ_max
  double log_norm = 0;              ///< log10 ‖W‖_F²
  double log_spectral_norm = 0;     ///< log10 λ_max
  MarchenkoPastur mp;
};

/// All metrics of a spectrum of an m × n matrix.
SpectrumMetrics spectrum_metrics(const std::vector<double>& sigma, std::int64_t rows,
                                 std::int64_t cols);

/// Smallest r with Σ_{i<r} σ_i² ≥ q·Σσ² (0 for an all-zero spectrum).
std::int64_t energy_rank(const std::vector<double>& sigma, double q);
/// Cumulative energy fractions Σ_{i≤r} σ_i² / Σσ², r = 0..k-1.
std::vector<double> energy_curve(const std::vector<double>& sigma);

}  // namespace ckpt
