// Matrix product operator (MPO, TensorLy's "tt-matrix") decomposition of a weight matrix, the
// initialisation of DoTA adapters (docs/mpo-init.md, ../shared/research/tensor-spectral-anchors.md
// §1).
//
// A matrix W with rows = ∏ i_k and cols = ∏ j_k is viewed as the tensor (i_1..i_N, j_1..j_N),
// permuted to the interleaved order (i_1, j_1, i_2, j_2, ...) and split by a left-to-right TT-SVD
// into cores T_k[r_{k-1}, i_k, j_k, r_k] with r_0 = r_N = 1 (the layout of mpo_lab and of
// TensorLy's tensor_train_matrix). Row and column multi-indices are row-major: row = ((i_1·I_2 +
// i_2)·I_3 + ...). Truncation happens during the sweep, so cores 1..N-1 are left-orthonormal and
// the last core holds the norm; the error is then exactly sqrt(Σ_k ε_k²), ε_k the Frobenius mass
// dropped at bond k.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ckpt {

/// How W's dimensions split into the N cores: rows = ∏ row[k], cols = ∏ col[k], row.size() ==
/// col.size().
struct MpoShape {
  std::vector<std::int64_t> row, col;
  std::size_t cores() const { return row.size(); }
};

/// How bonds are truncated. With neither set the decomposition is exact (full bonds).
struct MpoTruncation {
  std::int64_t bond_cap = 0;  // > 0: every bond at most this
  double tolerance = 0;       // > 0: each bond may drop ε/√(N−1)·‖W‖_F of Frobenius mass
};

/// One core T_k[r_{k-1}, i_k, j_k, r_k], row-major (the bond r_k varies fastest).
struct MpoCore {
  std::int64_t r_left = 1, i = 1, j = 1, r_right = 1;
  std::vector<float> data;
  std::int64_t size() const { return r_left * i * j * r_right; }
};

/// A decomposed matrix: the cores plus what the sweep dropped at each inner bond.
struct Mpo {
  MpoShape shape;
  std::vector<MpoCore> cores;
  std::vector<double> discarded;  // per inner bond k=1..N-1: sqrt(Σ dropped σ²) (absolute)
  std::vector<std::int64_t> full_bonds;  // per inner bond: the untruncated rank bound
  double norm = 0;                       // ‖W‖_F

  /// [1, r_1, ..., r_{N-1}, 1].
  std::vector<std::int64_t> bonds() const;
  /// Σ_k r_{k-1}·i_k·j_k·r_k.
  std::int64_t params() const;
};

/// Factorizes `n` into `cores` factors as evenly as possible (largest prime factors first, each to
/// the factor that is smallest so far), ordered with the largest factors in the middle like
/// mpo_lab's defaults ([4,4,8,8,4] for 4096). Returns nullopt when n has fewer prime factors than
/// `cores` (a prime n cannot be split); a prime factor larger than the rest stays whole in one
/// core.
std::optional<std::vector<std::int64_t>> balanced_factorization(std::int64_t n, int cores);

/// Bonds [1, r_1, ..., r_{N-1}, 1] that the sweep produces for `shape` with every bond capped at
/// `cap` (0: no cap): r_k = min(cap, r_{k-1}·i_k·j_k, ∏_{l>k} i_l·j_l).
std::vector<std::int64_t> mpo_bonds_for_cap(const MpoShape& shape, std::int64_t cap);
/// Σ_k r_{k-1}·i_k·j_k·r_k for `bonds`.
std::int64_t mpo_param_count(const MpoShape& shape, const std::vector<std::int64_t>& bonds);
/// The largest uniform bond cap whose parameter count is ≤ `params`; 0 when even cap 1 exceeds it.
/// Returns the full-bond cap when every cap fits.
std::int64_t mpo_cap_for_params(const MpoShape& shape, std::int64_t params);

/// Checks that `shape` factorizes rows x cols; returns an explanation or "" when valid.
std::string mpo_shape_problem(const MpoShape& shape, std::int64_t rows, std::int64_t cols);

/// TT-SVD of the row-major rows x cols matrix `w` (Eigen BDCSVD on each unfolding).
/// Throws Error(Usage) for an invalid shape or truncation.
Mpo mpo_decompose(const float* w, std::int64_t rows, std::int64_t cols, const MpoShape& shape,
                  const MpoTruncation& trunc);

/// Contracts the cores back into the row-major (∏ i_k) x (∏ j_k) matrix.
std::vector<float> mpo_contract(const MpoShape& shape, const std::vector<MpoCore>& cores);

}  // namespace ckpt
