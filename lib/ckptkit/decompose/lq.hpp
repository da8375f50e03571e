// LQ-LoRA's low-rank + quantized decomposition of one weight matrix, W ≈ Q + L1·L2
// (../shared/research/quant-anchors.md §1.1, §1.5; LoftQ order §3):
//   svd-first (LQ-LoRA)   Q₀ = 0; repeat: L = SVD_r(W − Q); Q = quantize(W − L)
//   quantize-first (LoftQ) L₀ = 0; repeat: Q = quantize(W − L); L = SVD_r(W − Q)
// The loop stops as soon as the error stops falling, or after max_iter iterations, and returns
// the BEST iterate (the reference code returns the last, worse one). The error is ‖W − Q − L‖_F,
// or with data-aware weights ‖√F ⊙ (W − Q − L)‖_F. With weights the SVD is LQ-LoRA's two-sided
// heuristic: SVD of diag(r)·R·diag(c) with r_i = √(mean_j F_ij), c_j = √(mean_i F_ij), unscaled
// afterwards; the quantization step is not weighted (as in LQ-LoRA).
// W is row-major [rows, cols] in the orientation it is quantized in (the storage orientation).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/linalg/svd.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {

enum class LqOrder { SvdFirst, QuantizeFirst };

/// "svd-first" | "quantize-first".
const char* lq_order_name(LqOrder o);

/// Data-aware importance of each element of W (all entries >= 0, finite).
struct LqWeights {
  std::vector<float> fisher;  ///< rows·cols per-element F (empirical Fisher), or empty
  std::vector<float> col;     ///< cols per-column weights (imatrix: E[x_j²]), or empty
  std::vector<float> row;     ///< rows per-row weights (imatrix of a transposed weight), or empty
  bool empty() const { return fisher.empty() && col.empty() && row.empty(); }
};

/// The separable SVD scalings of LQ-LoRA's two-sided heuristic: r_i = √(mean_j F_ij) and
/// c_j = √(mean_i F_ij) (reduce before the square root); a vector weight gives √w on its side and
/// ones on the other. Zero weights are floored at 1e-6 of the largest so the unscaling is finite.
struct LqScaling {
  std::vector<float> row, col;
};
LqScaling lq_scaling(const LqWeights& w, std::int64_t rows, std::int64_t cols);

/// Σ F_ij·e_ij² (f64) for e = `err` (Σ e² without weights).
double lq_weighted_sq(std::span<const float> err, const LqWeights* w, std::int64_t rows,
                      std::int64_t cols);

struct LqParams {
  int rank = 16;      ///< r; 0: plain quantization (one iteration, no low-rank part)
  int max_iter = 10;  ///< at most this many iterations
  LqOrder order = LqOrder::SvdFirst;
  quant::QuantSpec spec;   ///< the quantizer of Q
  bool exact_svd = false;  ///< exact SVD instead of the randomized one
  int oversample = 10;     ///< randomized SVD: P (LQ-LoRA: q = r + 10)
  int niter = 4;           ///< randomized SVD: power iterations (as svd-init)
  std::uint64_t seed = 0;
  ParallelFor parallel;  ///< splits the big products of one matrix (bit-identical any split)
};

/// The kept (best) iterate and the history.
struct LqResult {
  quant::QuantizedTensor q;    ///< Q of the best iterate
  std::vector<float> L1;       ///< rows × rank: U·√S (unscaled by the row weights)
  std::vector<float> L2;       ///< rank × cols: √S·Vᵀ
  std::vector<double> errors;  ///< error after each iteration (weighted when weights are given)
  int best_iter = 0;           ///< 1-based iteration of the kept iterate
  double error = 0;            ///< errors[best_iter - 1]
  double norm = 0;             ///< ‖W‖ in the same (weighted) norm
  double rel_error() const { return norm > 0 ? error / norm : 0.0; }
};

/// Runs the alternating loop on the row-major rows×cols matrix `w`. `stream` names the Rng
/// stream (the tensor name), so results depend only on (seed, stream). `weights` may be null.
/// Throws Error(Usage) for a rank outside [0, min(rows, cols)) and Error(Format) (quantize) for
/// non-finite input; the caller adds the tensor name.
LqResult lq_decompose_matrix(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                             const LqParams& params, const LqWeights* weights,
                             const std::string& stream);

/// L1·L2 (rows × cols, row-major); zeros when rank is 0.
std::vector<float> lq_lowrank(const LqResult& r, std::int64_t rows, std::int64_t cols);

/// The (weighted) error of plain quantization of `w` with `spec`: ‖W − Q(W)‖.
double lq_plain_error(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                      const quant::QuantSpec& spec, const LqWeights* weights);

/// The (weighted) squared error of every config of `specs` on `w`, for budget allocation. With
/// `iters` = 1 this is exactly LQ's first iteration, which does not depend on the config (Q₀ = 0):
/// one SVD, then one quantization per config. With more iterations the full loop runs per config
/// (params.max_iter = iters). params.spec is ignored.
std::vector<double> lq_candidate_errors(std::span<const float> w, std::int64_t rows,
                                        std::int64_t cols, const LqParams& params,
                                        const std::vector<quant::QuantSpec>& specs, int iters,
                                        const LqWeights* weights, const std::string& stream);

/// The PEFT LoRA factors for scaling s = alpha/r: B = L1/√s (rows × r), A = L2/√s (r × cols), so
/// that s·B·A = L1·L2 (LoftQ's PEFT port forgets the scaling: peft#1982).
struct LqAdapterFactors {
  std::vector<float> A, B;
};
LqAdapterFactors lq_adapter_factors(const LqResult& r, double scaling);

}  // namespace ckpt
