#include <catch2/catch.hpp>

#include "ckptkit/core/rng.hpp"
#include "ckptkit/decompose/lowrank_update.hpp"

namespace {

ckpt::RowMatrixXf random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  ckpt::Rng rng(seed, "lowrank");
  ckpt::RowMatrixXf m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = static_cast<float>(rng.normal());
  return m;
}

}  // namespace

TEST_CASE("factored SVD of a difference equals the dense SVD", "[lowrank]") {
  const auto B1 = random_matrix(70, 6, 1), A1 = random_matrix(6, 50, 2);
  const auto B0 = random_matrix(70, 6, 3), A0 = random_matrix(6, 50, 4);
  const Eigen::MatrixXd dense =
      (B1.cast<double>() * A1.cast<double>() - B0.cast<double>() * A0.cast<double>());
  Eigen::JacobiSVD<Eigen::MatrixXd> ref(dense);
  Eigen::MatrixXd L(70, 12), R(12, 50);
  L << B1.cast<double>(), -B0.cast<double>();
  R << A1.cast<double>(), A0.cast<double>();
  const auto f = ckpt::factored_svd(L, R);
  for (int i = 0; i < 12; ++i) {
    INFO("sigma " << i << ": factored " << f.S(i) << " dense " << ref.singularValues()(i));
    REQUIRE(std::abs(f.S(i) - ref.singularValues()(i)) <= 1e-9 * ref.singularValues()(0));
  }
  const double rel = (f.U * f.S.asDiagonal() * f.V.transpose() - dense).norm() / dense.norm();
  INFO("reconstruction error " << rel);
  REQUIRE(rel < 1e-12);
}

TEST_CASE("truncated difference drops exactly the tail energy", "[lowrank]") {
  const auto B1 = random_matrix(64, 8, 5), A1 = random_matrix(8, 40, 6);
  const auto B0 = random_matrix(64, 8, 7), A0 = random_matrix(8, 40, 8);
  const Eigen::MatrixXd dense =
      (B1.cast<double>() * A1.cast<double>() - B0.cast<double>() * A0.cast<double>());
  for (int rank : {16, 10, 4, 1}) {
    const auto t = ckpt::truncate_difference(B1, A1, B0, A0, rank);
    const double err2 = (dense - t.B.cast<double>() * t.A.cast<double>()).squaredNorm();
    INFO("rank " << rank << ": error² " << err2 << " reported dropped " << t.dropped_energy);
    REQUIRE(std::abs(err2 - t.dropped_energy) <= 1e-4 * t.total_energy);
    REQUIRE(t.B.cols() == rank);
    REQUIRE(t.A.rows() == rank);
  }
}
