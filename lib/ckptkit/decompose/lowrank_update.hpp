// Re-truncating a difference of low-rank products without forming the dense matrix:
//   ΔW = s·(B·A − B₀·A₀) = s·[B | −B₀]·[A ; A₀]   (out × in, rank ≤ r + r₀)
// QR of the left factor and of the transposed right factor reduce ΔW to a small (r+r₀)² core whose
// SVD gives ΔW's singular triplets exactly: cost O((out + in)·(r + r₀)²), never O(out·in).
#pragma once

#include <Eigen/Dense>

namespace ckpt {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The thin SVD of L·R (L: m×k, R: k×n) computed in f64 from QR factors.
struct FactoredSvd {
  Eigen::MatrixXd U;  // m × k
  Eigen::VectorXd S;  // k, descending
  Eigen::MatrixXd V;  // n × k
};
FactoredSvd factored_svd(const Eigen::MatrixXd& L, const Eigen::MatrixXd& R);

/// A rank-`rank` LoRA pair (B: out×rank, A: rank×in) with s·B·A ≈ s·(B₁A₁ − B₀A₀), singular values
/// split as √S on both sides (PEFT's convention), and the Frobenius energy it drops.
struct TruncatedDifference {
  RowMatrixXf B, A;
  double dropped_energy = 0;  // Σ_{i>rank} σ_i² of (B₁A₁ − B₀A₀), unscaled
  double total_energy = 0;    // Σ σ_i²
};
TruncatedDifference truncate_difference(const RowMatrixXf& B1, const RowMatrixXf& A1,
                                        const RowMatrixXf& B0, const RowMatrixXf& A0, int rank);

}  // namespace ckpt
