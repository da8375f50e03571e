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

#include "ckptkit/core/dtype.hpp"
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
  /// ‖W‖²_F when the caller already summed it while decoding W (saves a pass over W); unset:
  /// svd_init_matrix computes it with frobenius_sq.
  std::optional<double> norm_sq;
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

/// What residual_in_place measured over the whole matrix.
struct ResidualStats {
  double err_sq = 0;  // Σ W_res² of the f32 residual (‖W − s·B·A‖²_F), f64
  // With an output: max |cast(W_res) − W_res|, the error the cast adds; without: max |W_res|.
  double max_abs = 0;
  double max_ulps = 0;      // the cast's error in ulps of W as stored in the input (output only)
  double max_res_ulps = 0;  // ... in ulps of the stored residual entry (output only)
  std::uint64_t within_one_ulp = 0;  // entries whose cast error is ≤ 1 ulp of W (output only)
};

/// Where residual_in_place writes the cast residual: the input weight's bytes (storage
/// orientation, `in_dtype`) to measure against, and the output buffer (`out_dtype`, same
/// orientation and element count). Empty `out`: extraction, nothing is written.
struct ResidualOutput {
  DType in_dtype = DType::F32;
  std::span<const std::byte> in;
  DType out_dtype = DType::F32;
  std::span<std::byte> out;
};

/// Turns `w` (out × in, f32, math orientation) into W_res = W − s·B·A in place and, in the same
/// pass over each cache-sized row panel, casts it into `dst.out` (storage orientation: the
/// transpose when `transposed`) and gathers ResidualStats. Bit-identical for any `parallel` split
/// (fixed row blocks; per-block f64 partial sums added in block order).
ResidualStats residual_in_place(std::span<float> w, const SvdInitResult& r, std::int64_t out,
                                std::int64_t in, bool transposed, const ResidualOutput& dst,
                                const ParallelFor& parallel = {});

/// The scaling PEFT applies for (alpha, rank).
double lora_scaling(double alpha, int rank, bool rslora);

}  // namespace ckpt
