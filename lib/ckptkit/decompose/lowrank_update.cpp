#include "ckptkit/decompose/lowrank_update.hpp"

#include <algorithm>

#include "ckptkit/core/error.hpp"

namespace ckpt {

FactoredSvd factored_svd(const Eigen::MatrixXd& L, const Eigen::MatrixXd& R) {
  CKPT_ASSERT(L.cols() == R.rows());
  const Eigen::Index k = L.cols();
  // L = Q_L R_L,  Rᵀ = Q_R R_R  ⇒  L·R = Q_L (R_L R_Rᵀ) Q_Rᵀ; the k×k core carries the spectrum.
  Eigen::HouseholderQR<Eigen::MatrixXd> ql(L), qr(R.transpose());
  const Eigen::Index kl = std::min(L.rows(), k), kr = std::min(R.cols(), k);
  const Eigen::MatrixXd RL = ql.matrixQR().topRows(kl).triangularView<Eigen::Upper>();
  const Eigen::MatrixXd RR = qr.matrixQR().topRows(kr).triangularView<Eigen::Upper>();
  const Eigen::MatrixXd core = RL * RR.transpose();
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(core, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::MatrixXd QL = ql.householderQ() * Eigen::MatrixXd::Identity(L.rows(), kl);
  const Eigen::MatrixXd QR = qr.householderQ() * Eigen::MatrixXd::Identity(R.cols(), kr);
  return {QL * svd.matrixU(), svd.singularValues(), QR * svd.matrixV()};
}

TruncatedDifference truncate_difference(const RowMatrixXf& B1, const RowMatrixXf& A1,
                                        const RowMatrixXf& B0, const RowMatrixXf& A0, int rank) {
  CKPT_ASSERT(B1.rows() == B0.rows() && A1.cols() == A0.cols());
  const Eigen::Index out = B1.rows(), in = A1.cols();
  const Eigen::Index k = B1.cols() + B0.cols();
  Eigen::MatrixXd L(out, k), R(k, in);
  L << B1.cast<double>(), -B0.cast<double>();
  R << A1.cast<double>(), A0.cast<double>();
  const FactoredSvd f = factored_svd(L, R);
  const Eigen::Index keep = std::min<Eigen::Index>(rank, f.S.size());
  TruncatedDifference t;
  t.total_energy = f.S.squaredNorm();
  t.dropped_energy = f.S.tail(f.S.size() - keep).squaredNorm();
  const Eigen::VectorXd root = f.S.head(keep).cwiseSqrt();
  t.B = (f.U.leftCols(keep) * root.asDiagonal()).cast<float>();
  t.A = (root.asDiagonal() * f.V.leftCols(keep).transpose()).cast<float>();
  if (keep < rank) {
    // Pad with zero directions so the adapter keeps the requested rank.
    t.B.conservativeResize(out, rank);
    t.A.conservativeResize(rank, in);
    t.B.rightCols(rank - keep).setZero();
    t.A.bottomRows(rank - keep).setZero();
  }
  return t;
}

}  // namespace ckpt
