#include "ckptkit/linalg/symeig.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <string>

#include "ckptkit/core/error.hpp"

#ifdef CKPTKIT_HAVE_LAPACKE
#include "ckptkit/linalg/lapack.hpp"
#endif

namespace ckpt {

namespace {

using MatD = Eigen::MatrixXd;
using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void check_square(const SymMatrix& g) {
  CKPT_ASSERT(g.k >= 0);
  CKPT_ASSERT(static_cast<std::int64_t>(g.a.size()) == g.k * g.k);
}

}  // namespace

SymMatrix gram_f64(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
  CKPT_ASSERT(rows > 0 && cols > 0);
  CKPT_ASSERT(static_cast<std::int64_t>(w.size()) == rows * cols);
  const bool tall = rows >= cols;
  SymMatrix g;
  g.k = std::min(rows, cols);
  g.a.assign(static_cast<std::size_t>(g.k * g.k), 0.0);
  // The row-major rows × cols buffer is the column-major cols × rows matrix A = Wᵀ, so
  // WᵀW = A·Aᵀ ("N") and WWᵀ = Aᵀ·A ("T"). f32 → f64 first: every product is then exact.
  std::vector<double> a(w.begin(), w.end());
#ifdef CKPTKIT_HAVE_LAPACKE
  const auto k = static_cast<int>(g.k);
  const auto inner = static_cast<int>(tall ? rows : cols);
  lapack().dsyrk(CblasColMajor, CblasLower, tall ? CblasNoTrans : CblasTrans, k, inner, 1.0,
                 a.data(), static_cast<int>(cols), 0.0, g.a.data(), k);
#else
  const Eigen::Map<const MatD> A(a.data(), cols, rows);
  Eigen::Map<MatD> G(g.a.data(), g.k, g.k);
  if (tall)
    G.selfadjointView<Eigen::Lower>().rankUpdate(A);
  else
    G.selfadjointView<Eigen::Lower>().rankUpdate(A.transpose());
#endif
  return g;
}

std::vector<double> symmetric_eigenvalues(SymMatrix&& g) {
  check_square(g);
  std::vector<double> w(static_cast<std::size_t>(g.k));
  if (g.k == 0) return w;
#ifdef CKPTKIT_HAVE_LAPACKE
  // jobz 'N': dsytrd + dsterf (Pal–Walker–Kahan QR on the tridiagonal, O(k²)).
  const lapack_int info = lapack().dsyevd(LAPACK_COL_MAJOR, 'N', 'L', static_cast<lapack_int>(g.k),
                                          g.a.data(), static_cast<lapack_int>(g.k), w.data());
  if (info != 0)
    fail(ErrorKind::Numeric, "symmetric eigensolver (dsyevd) failed, info " + std::to_string(info));
#else
  Eigen::Map<MatD> G(g.a.data(), g.k, g.k);
  Eigen::SelfAdjointEigenSolver<MatD> eig(G, Eigen::EigenvaluesOnly);
  if (eig.info() != Eigen::Success)
    fail(ErrorKind::Numeric, "symmetric eigensolver did not converge");
  std::copy(eig.eigenvalues().data(), eig.eigenvalues().data() + g.k, w.begin());
#endif
  g.a.clear();
  return w;
}

std::vector<double> symmetric_eigen(SymMatrix& g) {
  check_square(g);
  std::vector<double> w(static_cast<std::size_t>(g.k));
  if (g.k == 0) return w;
#ifdef CKPTKIT_HAVE_LAPACKE
  // jobz 'V': dsytrd, divide and conquer on the tridiagonal (dstedc), back-transformation.
  const lapack_int info = lapack().dsyevd(LAPACK_COL_MAJOR, 'V', 'L', static_cast<lapack_int>(g.k),
                                          g.a.data(), static_cast<lapack_int>(g.k), w.data());
  if (info != 0)
    fail(ErrorKind::Numeric, "symmetric eigensolver (dsyevd) failed, info " + std::to_string(info));
#else
  Eigen::Map<MatD> G(g.a.data(), g.k, g.k);
  Eigen::SelfAdjointEigenSolver<MatD> eig(G, Eigen::ComputeEigenvectors);
  if (eig.info() != Eigen::Success)
    fail(ErrorKind::Numeric, "symmetric eigensolver did not converge");
  std::copy(eig.eigenvalues().data(), eig.eigenvalues().data() + g.k, w.begin());
  G = eig.eigenvectors();
#endif
  return w;
}

const char* symeig_backend() {
#ifdef CKPTKIT_HAVE_LAPACKE
  return "lapacke-dsyevd";
#else
  return "eigen-selfadjoint";
#endif
}

}  // namespace ckpt
