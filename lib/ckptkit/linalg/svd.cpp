#include "ckptkit/linalg/svd.hpp"

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"

#ifdef CKPTKIT_HAVE_LAPACKE
#include <lapacke.h>
// OpenBLAS's own thread pool would fight TBB (perf-baselines §5): run it single-threaded. Weak, so
// a LAPACK without this symbol still links.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace ckpt {
namespace {

using MatF = Eigen::MatrixXf;  // column-major
using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatF>;

using Clock = std::chrono::steady_clock;

void check_shape(std::span<const float> w, std::int64_t m, std::int64_t n) {
  CKPT_ASSERT(m > 0 && n > 0);
  CKPT_ASSERT(static_cast<std::int64_t>(w.size()) == m * n);
}

#ifdef CKPTKIT_HAVE_LAPACKE
void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
}
#endif

// Rows per block of a big product. Fixed (a function of nothing but this constant), so the
// blocks, and therefore every rounding, are the same whatever the thread count.
constexpr std::int64_t kRowBlock = 512;

void for_blocks(std::int64_t rows, const ParallelFor& parallel,
                const std::function<void(std::int64_t, std::int64_t)>& body) {
  const std::size_t blocks = static_cast<std::size_t>((rows + kRowBlock - 1) / kRowBlock);
  auto run = [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      const std::int64_t r0 = static_cast<std::int64_t>(b) * kRowBlock;
      body(r0, std::min(kRowBlock, rows - r0));
    }
  };
  if (parallel && blocks > 1)
    parallel(blocks, 1, run);
  else
    run(0, blocks);
}

// Y = A·X (m×l) with A the row-major weight: each task owns whole output rows (no split of the
// inner dimension), so no partial sums are ever combined.
void product(const ConstRowMap& a, const MatF& x, MatF& y, const ParallelFor& parallel) {
  y.resize(a.rows(), x.cols());
  for_blocks(a.rows(), parallel, [&](std::int64_t r0, std::int64_t len) {
    y.middleRows(r0, len).noalias() = a.middleRows(r0, len) * x;
  });
}

// Z = Aᵀ·X (n×l), split over rows of Z (= columns of A).
void product_t(const ConstRowMap& a, const MatF& x, MatF& z, const ParallelFor& parallel) {
  z.resize(a.cols(), x.cols());
  for_blocks(a.cols(), parallel, [&](std::int64_t r0, std::int64_t len) {
    z.middleRows(r0, len).noalias() = a.middleCols(r0, len).transpose() * x;
  });
}

// Orthonormal basis of the columns of y (thin Q of a Householder QR), in place.
void orthonormalize(MatF& y) {
  Eigen::HouseholderQR<MatF> qr(y);
  MatF q = MatF::Identity(y.rows(), y.cols());
  qr.householderQ().applyThisOnTheLeft(q);
  y = std::move(q);
}

SvdResult from_eigen(const MatF& u, const Eigen::VectorXf& s, const MatF& v, std::int64_t k) {
  SvdResult r;
  r.m = u.rows();
  r.n = v.rows();
  r.k = k;
  r.U.resize(static_cast<std::size_t>(r.m * k));
  Eigen::Map<RowMatF>(r.U.data(), r.m, k) = u.leftCols(k);
  r.S.assign(s.data(), s.data() + k);
  r.Vt.resize(static_cast<std::size_t>(k * r.n));
  // Row-major Vt (k×n) has the memory of column-major V (n×k).
  Eigen::Map<MatF>(r.Vt.data(), r.n, k) = v.leftCols(k);
  return r;
}

SvdResult bdcsvd(std::span<const float> w, std::int64_t m, std::int64_t n) {
  const ConstRowMap a(w.data(), m, n);
  Eigen::BDCSVD<MatF> svd(MatF(a), Eigen::ComputeThinU | Eigen::ComputeThinV);
  if (svd.info() != Eigen::Success) fail(ErrorKind::Numeric, "SVD did not converge");
  return from_eigen(svd.matrixU(), svd.singularValues(), svd.matrixV(), std::min(m, n));
}

}  // namespace

const char* exact_svd_backend() {
#ifdef CKPTKIT_HAVE_LAPACKE
  return "lapacke-sgesdd";
#else
  return "eigen-bdcsvd";
#endif
}

SvdResult exact_svd(std::span<const float> w, std::int64_t m, std::int64_t n) {
  check_shape(w, m, n);
#ifdef CKPTKIT_HAVE_LAPACKE
  blas_single_threaded();
  // The row-major m×n buffer is the column-major n×m matrix Wᵀ. For Wᵀ = U'·S·V'ᵀ we have
  // W = V'·S·U'ᵀ, and LAPACK's column-major outputs are then exactly our row-major U (from vt')
  // and row-major Vt (from u'): no transposes, no copies besides the destroyed input.
  const std::int64_t k = std::min(m, n);
  std::vector<float> a(w.begin(), w.end());
  SvdResult r;
  r.m = m;
  r.n = n;
  r.k = k;
  r.S.resize(static_cast<std::size_t>(k));
  r.U.resize(static_cast<std::size_t>(m * k));
  r.Vt.resize(static_cast<std::size_t>(k * n));
  const lapack_int info =
      LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', static_cast<lapack_int>(n), static_cast<lapack_int>(m),
                     a.data(), static_cast<lapack_int>(n), r.S.data(), r.Vt.data(),
                     static_cast<lapack_int>(n), r.U.data(), static_cast<lapack_int>(k));
  if (info < 0)
    fail(ErrorKind::Internal, "internal error: sgesdd argument " + std::to_string(-info));
  if (info > 0) return bdcsvd(w, m, n);  // gesdd's divide and conquer failed: try Eigen's
  return r;
#else
  return bdcsvd(w, m, n);
#endif
}

std::vector<float> exact_singular_values(std::span<const float> w, std::int64_t m, std::int64_t n) {
  check_shape(w, m, n);
  const std::int64_t k = std::min(m, n);
#ifdef CKPTKIT_HAVE_LAPACKE
  blas_single_threaded();
  std::vector<float> a(w.begin(), w.end()), s(static_cast<std::size_t>(k));
  float dummy = 0;
  const lapack_int info =
      LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', static_cast<lapack_int>(n), static_cast<lapack_int>(m),
                     a.data(), static_cast<lapack_int>(n), s.data(), &dummy, 1, &dummy, 1);
  if (info == 0) return s;
#endif
  const ConstRowMap a2(w.data(), m, n);
  const MatF a2m = a2;
  Eigen::BDCSVD<MatF> svd(a2m);
  if (svd.info() != Eigen::Success) fail(ErrorKind::Numeric, "SVD did not converge");
  const auto& sv = svd.singularValues();
  return std::vector<float>(sv.data(), sv.data() + k);
}

RsvdResult randomized_svd(std::span<const float> w, std::int64_t m, std::int64_t n,
                          const RsvdOptions& o) {
  check_shape(w, m, n);
  const std::int64_t kmax = std::min(m, n);
  CKPT_ASSERT(o.rank >= 1 && o.rank <= kmax);
  const std::int64_t l = std::min<std::int64_t>(o.rank + std::max(o.oversample, 0), kmax);
  const ConstRowMap a(w.data(), m, n);
  RsvdResult out;
  double gemm_s = 0;
  int products = 0;
  auto timed = [&](auto&& f) {
    const auto t0 = Clock::now();
    f();
    gemm_s += std::chrono::duration<double>(Clock::now() - t0).count();
    ++products;
  };

  // Gaussian test matrix, drawn column by column from the tensor's own stream.
  MatF omega(n, l);
  Rng rng(o.seed, o.stream);
  for (std::int64_t j = 0; j < l; ++j)
    for (std::int64_t i = 0; i < n; ++i)
      omega(i, j) = static_cast<float>(rng.normal());

  MatF q, z;
  timed([&] { product(a, omega, q, o.parallel); });
  orthonormalize(q);
  for (int it = 0; it < o.niter; ++it) {  // Alg. 4.4: QR after every product
    timed([&] { product_t(a, q, z, o.parallel); });
    orthonormalize(z);
    timed([&] { product(a, z, q, o.parallel); });
    orthonormalize(q);
  }
  MatF bt;  // Bᵀ = Aᵀ·Q (n×l)
  timed([&] { product_t(a, q, bt, o.parallel); });
  out.captured_sq = bt.cast<double>().squaredNorm();

  // Bᵀ = Q2·R, R = Ur·S·Vrᵀ  =>  A ≈ Q·B = (Q·Vr)·S·(Q2·Ur)ᵀ.
  Eigen::HouseholderQR<MatF> qr(bt);
  const MatF r = qr.matrixQR().topRows(l).triangularView<Eigen::Upper>();
  MatF q2 = MatF::Identity(n, l);
  qr.householderQ().applyThisOnTheLeft(q2);
  Eigen::JacobiSVD<MatF> small(r, Eigen::ComputeFullU | Eigen::ComputeFullV);
  const MatF u = q * small.matrixV();
  const MatF v = q2 * small.matrixU();
  const Eigen::VectorXf s = small.singularValues();
  out.sketch_sigma.assign(s.data(), s.data() + l);
  out.svd = from_eigen(u, s, v, o.rank);
  out.gemm_flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(l) * products;
  out.gemm_seconds = gemm_s;
  return out;
}

std::vector<double> jacobi_singular_values_f64(std::span<const float> w, std::int64_t m,
                                               std::int64_t n) {
  check_shape(w, m, n);
  const Eigen::MatrixXd a = ConstRowMap(w.data(), m, n).cast<double>();
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(a);
  const auto& s = svd.singularValues();
  return std::vector<double>(s.data(), s.data() + s.size());
}

std::vector<float> matmul(std::span<const float> a, std::span<const float> b, std::int64_t m,
                          std::int64_t k, std::int64_t n) {
  CKPT_ASSERT(static_cast<std::int64_t>(a.size()) == m * k &&
              static_cast<std::int64_t>(b.size()) == k * n);
  std::vector<float> c(static_cast<std::size_t>(m * n));
  Eigen::Map<RowMatF>(c.data(), m, n).noalias() =
      ConstRowMap(a.data(), m, k) * ConstRowMap(b.data(), k, n);
  return c;
}

void subtract_product(std::span<float> c, std::span<const float> a, std::span<const float> b,
                      std::int64_t m, std::int64_t k, std::int64_t n, float scale,
                      const ParallelFor& parallel) {
  CKPT_ASSERT(static_cast<std::int64_t>(c.size()) == m * n &&
              static_cast<std::int64_t>(a.size()) == m * k &&
              static_cast<std::int64_t>(b.size()) == k * n);
  Eigen::Map<RowMatF> cm(c.data(), m, n);
  const ConstRowMap am(a.data(), m, k), bm(b.data(), k, n);
  for_blocks(m, parallel, [&](std::int64_t r0, std::int64_t len) {
    cm.middleRows(r0, len).noalias() -= scale * (am.middleRows(r0, len) * bm);
  });
}

double frobenius_sq(std::span<const float> w) {
  double s = 0;
  for (float x : w)
    s += static_cast<double>(x) * x;
  return s;
}

double eigen_gemm_gflops(std::int64_t m, std::int64_t k, std::int64_t n, int reps) {
  Rng rng(1, "gemm-peak");
  MatF a(m, k), b(k, n), c(m, n);
  for (std::int64_t i = 0; i < a.size(); ++i)
    a.data()[i] = static_cast<float>(rng.uniform() - 0.5);
  for (std::int64_t i = 0; i < b.size(); ++i)
    b.data()[i] = static_cast<float>(rng.uniform() - 0.5);
  c.noalias() = a * b;  // warm-up
  std::vector<double> rates;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    const auto t0 = Clock::now();
    c.noalias() = a * b;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    rates.push_back(2.0 * m * k * n / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace ckpt
