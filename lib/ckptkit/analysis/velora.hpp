// VeLoRA (Miles et al., NeurIPS 2024) projection vectors from calibration activations.
//
// VeLoRA saves, for the weight gradient of a linear layer, not its input x ∈ R^D but one scalar per
// sub-token: x is split into M contiguous sub-tokens s of size g = ceil(D/M) (zero-padded at the
// end when M does not divide D, as PEFT does), and only z = ⟨s, v⟩ is kept for a fixed unit vector
// v ∈ R^g shared by all sub-tokens of the layer. The backward pass rebuilds ŝ = z·v.
//
// This module computes v from a stream of activation rows [tokens, D] for one or several M and
// two initialisations, and measures how much of the input survives:
//   batch-average  v = normalize(mean of all sub-tokens)       (VeLoRA's batch_average_once)
//   top-singular   v = top right singular vector of the sub-token matrix S [tokens*M, g], the best
//                  rank-1 direction, from the g×g Gram matrix Σ s sᵀ in f64 (our extension)
// Sign: v is flipped so that ⟨v, mean sub-token⟩ > 0; when that product is ~0 (|·| ≤ 1e-9·‖mean‖),
// the largest-magnitude component (lowest index on ties) is made positive.
// Fidelity, with X̂ the input rebuilt as PEFT does (each sub-token replaced by ⟨s,v⟩·v, padding
// columns cut off):
//   energy_kept  = Σ⟨s,v⟩² / Σ‖s‖²
//   grad_rel_err = ‖X̂ᵀX̂ − XᵀX‖_F / ‖XᵀX‖_F   (weight-gradient proxy, see docs/velora-init.md)
//   x_rel_err    = ‖X̂ − X‖_F / ‖X‖_F
// Everything is computed in f64 in two streaming passes, without materialising X̂.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace ckpt::velora {

/// How v is chosen.
enum class Init { BatchAverage, TopSingular };

/// "batch-average" / "top-singular".
std::string_view init_name(Init init);
/// Parses init_name()'s spellings (also "batch_average", "batch_average_once", "top_singular").
std::optional<Init> parse_init(std::string_view s);

/// Sub-token size ceil(dim / groups) (PEFT's _get_group_dim); groups must be in [1, dim].
std::int64_t group_dim(std::int64_t dim, std::int64_t groups);

/// Called with `n` whole rows of `dim` f64 values each (row-major), in token order.
using BlockFn = std::function<void(const double* rows, std::int64_t n)>;

/// An activation matrix [tokens, dim] delivered as blocks of rows. analyze() walks it twice, so
/// `for_each_block` must give the same rows each time.
struct RowSource {
  std::int64_t dim = 0;
  std::function<void(const BlockFn&)> for_each_block;
};

/// A RowSource over an in-memory row-major matrix (the span must outlive the source).
RowSource matrix_source(std::span<const double> values, std::int64_t dim,
                        std::int64_t block_rows = 256);

/// How much of the input one projection keeps (definitions in the header comment).
struct Fidelity {
  double energy_kept = 0;
  double grad_rel_err = 0;
  double x_rel_err = 0;
};

/// One projection vector and its fidelity.
struct Projection {
  std::int64_t groups = 0;
  std::int64_t group_dim = 0;
  Init init = Init::BatchAverage;
  std::vector<double> v;  ///< unit norm, length group_dim
  Fidelity fidelity;
};

/// Result of analyze(): per (groups, init) pair, groups-major in the order asked.
struct Analysis {
  std::int64_t tokens = 0;
  std::int64_t dim = 0;
  double x_norm2 = 0;     ///< ‖X‖_F²
  double gram_norm2 = 0;  ///< ‖XᵀX‖_F²
  std::vector<Projection> projections;
};

/// Computes v and its fidelity for every M in `groups` and every init in `inits`.
/// Throws Error(Usage) for an M outside [1, dim], Error(Format) for a matrix with no rows.
/// Memory: one dim×dim f64 Gram matrix plus M×M per projection.
Analysis analyze(const RowSource& x, std::span<const std::int64_t> groups,
                 std::span<const Init> inits);

/// The sweep's group counts for a width: 1, 2, 4, ... up to dim, dim itself, and `extra` when it
/// lies in [1, dim]; sorted, without duplicates.
std::vector<std::int64_t> sweep_groups(std::int64_t dim, std::int64_t extra = 0);

/// Bytes a training step keeps for one layer's weight gradient, for a batch of `batch` sequences
/// of `seq` tokens: the full input (batch·seq·dim·act_bytes) versus VeLoRA's z
/// (batch·seq·groups·z_bytes).
struct MemoryEstimate {
  std::uint64_t full_bytes = 0;
  std::uint64_t compressed_bytes = 0;
  std::uint64_t saved_bytes = 0;
  double ratio = 0;  ///< full / compressed
};

/// See MemoryEstimate. All arguments must be positive.
MemoryEstimate memory_estimate(std::int64_t dim, std::int64_t groups, std::int64_t batch,
                               std::int64_t seq, std::int64_t act_bytes, std::int64_t z_bytes);

}  // namespace ckpt::velora
