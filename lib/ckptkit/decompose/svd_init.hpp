// SVD-based adapter initialisation of one weight matrix, exactly as PEFT / SORSA / mergekit do it
// (../shared/research/peft-anchors.md §1.2, §1.8, §2.1, §3.1):
//   pissa    top-r triplets; S_r ← S_r/s; A = diag(√S_r)·V_rᵀ, B = U_r·diag(√S_r); W_res = W −
//   s·B·A milora   the same with the r smallest triplets sorsa    A = V_pᵀ, S = S_p, B = U_p (no √
//   split); W_res = W − s·B·diag(S)·A extract  the matrix is a fine-tune delta ΔW = W_ft − W_base;
//   A, B as pissa, no residual
// W is the [out, in] orientation (callers transpose Conv1D weights first), f32, row-major.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/linalg/svd.hpp"

namespace ckpt {

enum class SvdInitMethod { Pissa, Milora, Sorsa, Extract };
enum class SvdAlgorithm { Exact, Randomized };

/// "pissa" | "milora" | "sorsa" | "extract".
const char* method_name(SvdInitMethod m);

struct SvdInitParams {
  SvdInitMethod method = SvdInitMethod::Pissa;
  SvdAlgorithm algorithm = SvdAlgorithm::Exact;
  int rank = 16;                 // fixed rank (ignored when energy is set)
  std::optional<double> alpha;   // lora_alpha; unset: alpha = rank (PiSSA's recommendation)
  bool rslora = false;           // s = alpha / √r instead of alpha / r
  std::optional<double> energy;  // pick the smallest k with Σσ²_{≤k} ≥ F·‖W‖²_F
  int max_rank = 0;              // energy with randomized SVD: sketch size cap (0: 256)
  int oversample = 10;
  int niter = 4;
  std::uint64_t seed = 0;
  ParallelFor parallel;  // for one big matrix's products (randomized path)
};

/// The adapter factors and the numbers a report needs.
struct SvdInitResult {
  int rank = 0;
  double alpha = 0, scaling = 1;
  std::vector<float> A;    // rank × in: lora_A, or sorsa_A = V_pᵀ
  std::vector<float> S;    // sorsa_S (sorsa only)
  std::vector<float> B;    // out × rank: lora_B, or sorsa_B = U_p
  double norm_sq = 0;      // ‖W‖²_F (f64)
  double captured_sq = 0;  // Σ of the kept σ²
  double sigma_1 = 0, sigma_r = 0;
  std::optional<double> sigma_r1;         // σ_{r+1} (an estimate on the randomized path)
  std::optional<double> optimal_rel_err;  // exact only: √(Σ_{i>r}σ²)/‖W‖ (pissa/sorsa/extract)
  std::optional<double> posterior_rel_err;  // randomized only: ‖W − QQᵀW‖_F/‖W‖_F (sketch basis)
  bool energy_met = true;                   // --energy reached within the rank cap
  double gemm_flops = 0, gemm_seconds = 0;  // randomized products, for GFLOP/s
};

/// Decomposes the row-major out×in matrix `w`. `stream` names the Rng stream (the tensor name).
/// Throws Error(Usage) for a rank outside [1, min(out, in)).
SvdInitResult svd_init_matrix(std::span<const float> w, std::int64_t out, std::int64_t in,
                              const SvdInitParams& params, const std::string& stream);

/// s · B · A (sorsa: s · B · diag(S) · A), out × in, f32, row-major: the adapter's ΔW.
std::vector<float> adapter_delta(const SvdInitResult& r, std::int64_t out, std::int64_t in);

/// w −= s · B · A (sorsa: s · B · diag(S) · A) in place: turns W into W_res without a second
/// out × in buffer. `parallel` splits the product over fixed row blocks.
void subtract_adapter_delta(std::span<float> w, const SvdInitResult& r, std::int64_t out,
                            std::int64_t in, const ParallelFor& parallel = {});

/// The scaling PEFT applies for (alpha, rank).
double lora_scaling(double alpha, int rank, bool rslora);

}  // namespace ckpt
