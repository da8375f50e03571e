#include "ckptkit/linalg/svd.hpp"

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <algorithm>
#include <chrono>
#include <cmath>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/linalg/skinny_gemm.hpp"

#ifdef CKPTKIT_HAVE_LAPACKE
#include "ckptkit/linalg/lapack.hpp"
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

// A skinny matrix (the sketch, its products) in the layout of skinny_gemm.hpp: row-major with
// row stride skinny_stride(cols), the padding columns zero.
struct Skinny {
  std::int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> v;
  Skinny() = default;
  Skinny(std::int64_t r, std::int64_t c)
      : rows(r), cols(c), ld(skinny_stride(c)), v(static_cast<std::size_t>(r * ld), 0.0f) {}
  float* row(std::int64_t i) { return v.data() + i * ld; }
  const float* row(std::int64_t i) const { return v.data() + i * ld; }
};

Skinny to_skinny(const MatF& x) {
  Skinny s(x.rows(), x.cols());
  for (std::int64_t i = 0; i < x.rows(); ++i)
    for (std::int64_t j = 0; j < x.cols(); ++j)
      s.row(i)[j] = x(i, j);
  return s;
}

MatF to_eigen(const Skinny& s) {
  MatF x(s.rows, s.cols);
  for (std::int64_t i = 0; i < s.rows; ++i)
    for (std::int64_t j = 0; j < s.cols; ++j)
      x(i, j) = s.row(i)[j];
  return x;
}

// Rows per panel inside a fixed block. A Gram pass reads each panel twice (A_p·Z, then A_pᵀ·Y_p)
// and wants the second read from cache; the Aᵀ·X kernel reloads its n × l output once per panel,
// which longer panels amortize. How a block is cut into panels changes no rounding (the kernels'
// sums run along whole blocks in order), so the sizes are free to tune: measured on Llama-7B
// shapes (docs/bench-svd-init.md).
constexpr std::int64_t kGramPanelBytes = 2 * 1024 * 1024;
constexpr std::int64_t kPanelBytes = 256 * 1024;

std::int64_t panel_rows(std::int64_t cols, std::int64_t bytes) {
  return std::clamp<std::int64_t>(bytes / (std::max<std::int64_t>(cols, 1) * 4), 16, kRowBlock);
}

// Adds the per-block partial sums in block order (the same bits for any split).
Skinny sum_partials(std::vector<Skinny>& partial) {
  Skinny out = std::move(partial[0]);
  for (std::size_t b = 1; b < partial.size(); ++b)
    for (std::size_t i = 0; i < out.v.size(); ++i)
      out.v[i] += partial[b].v[i];
  return out;
}

// Y = A·X (m×l) with A the row-major weight: each task owns whole output rows.
Skinny product(const ConstRowMap& a, const Skinny& x, const ParallelFor& parallel) {
  Skinny y(a.rows(), x.cols);
  for_blocks(a.rows(), parallel, [&](std::int64_t r0, std::int64_t len) {
    skinny_nn(a.data() + r0 * a.cols(), a.cols(), len, a.cols(), x.row(0), x.cols, x.ld, y.row(r0),
              false);
  });
  return y;
}

// Z = Aᵀ·X (n×l): each fixed row block of A sums its own Aᵀ_b·X_b (contiguous rows, read in
// panels), and the blocks' sums are added in block order.
Skinny product_t(const ConstRowMap& a, const Skinny& x, const ParallelFor& parallel) {
  const std::int64_t n = a.cols(), panel = panel_rows(n, kPanelBytes);
  std::vector<Skinny> partial(row_block_count(a.rows()));
  for_blocks(a.rows(), parallel, [&](std::int64_t r0, std::int64_t len) {
    Skinny& zb = partial[static_cast<std::size_t>(r0 / kRowBlock)];
    zb = Skinny(n, x.cols);
    for (std::int64_t p0 = r0; p0 < r0 + len; p0 += panel)
      skinny_tn(a.data() + p0 * n, n, std::min(panel, r0 + len - p0), n, x.row(p0), x.cols, x.ld,
                zb.row(0));
  });
  return sum_partials(partial);
}

// Tall A (m ≥ n): G = Aᵀ·(A·Z) (n×l) in ONE pass over A: for each row panel A_p, Y_p = A_p·Z,
// then G_b += A_pᵀ·Y_p while A_p is still in cache. A is streamed from memory once for two
// products. Each fixed row block b accumulates its own G_b.
Skinny gram_rows(const ConstRowMap& a, const Skinny& z, const ParallelFor& parallel) {
  const std::int64_t n = a.cols(), panel = panel_rows(n, kGramPanelBytes);
  std::vector<Skinny> partial(row_block_count(a.rows()));
  for_blocks(a.rows(), parallel, [&](std::int64_t r0, std::int64_t len) {
    Skinny& gb = partial[static_cast<std::size_t>(r0 / kRowBlock)];
    gb = Skinny(n, z.cols);
    Skinny yp(panel, z.cols);
    for (std::int64_t p0 = r0; p0 < r0 + len; p0 += panel) {
      const std::int64_t rows = std::min(panel, r0 + len - p0);
      skinny_nn(a.data() + p0 * n, n, rows, n, z.row(0), z.cols, z.ld, yp.row(0), false);
      skinny_tn(a.data() + p0 * n, n, rows, n, yp.row(0), z.cols, z.ld, gb.row(0));
    }
  });
  return sum_partials(partial);
}

// Wide A (m < n): Y = A·(Aᵀ·Q) (m×l) as two passes over contiguous rows. (Fusing them reads A by
// column panels, strided rows a page apart, which measured slower than reading A twice.)
Skinny gram_cols(const ConstRowMap& a, const Skinny& q, const ParallelFor& parallel) {
  return product(a, product_t(a, q, parallel), parallel);
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
      lapack().sgesdd(LAPACK_COL_MAJOR, 'S', static_cast<lapack_int>(n), static_cast<lapack_int>(m),
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
  std::vector<float> a(w.begin(), w.end()), s(static_cast<std::size_t>(k));
  float dummy = 0;
  const lapack_int info =
      lapack().sgesdd(LAPACK_COL_MAJOR, 'N', static_cast<lapack_int>(n), static_cast<lapack_int>(m),
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

namespace {

RsvdResult randomized_svd_in_range(std::span<const float> w, std::int64_t m, std::int64_t n,
                                   const RsvdOptions& o);

}  // namespace

RsvdResult randomized_svd(std::span<const float> w, std::int64_t m, std::int64_t n,
                          const RsvdOptions& o) {
  check_shape(w, m, n);
  // The Gram products square the entries and the QR sums squares of those: weights beyond ~2^16
  // overflow f32 (all-NaN factors), tiny ones underflow. Such a matrix is run scaled by a power
  // of two, which every f32 operation carries exactly, so the result equals the in-range run's.
  float peak = 0;
  for (float x : w)
    peak = std::max(peak, std::fabs(x));
  if (!std::isfinite(peak) || peak == 0 || (peak >= 0x1p-16f && peak <= 0x1p16f))
    return randomized_svd_in_range(w, m, n, o);
  int e = 0;
  std::frexp(peak, &e);  // peak = f·2^e, f in [0.5, 1)
  std::vector<float> scaled(w.begin(), w.end());
  for (float& x : scaled)
    x = std::ldexp(x, -e);
  RsvdResult r = randomized_svd_in_range(scaled, m, n, o);
  for (float& s : r.svd.S)
    s = std::ldexp(s, e);
  for (float& s : r.sketch_sigma)
    s = std::ldexp(s, e);
  r.captured_sq = std::ldexp(r.captured_sq, 2 * e);
  return r;
}

namespace {

RsvdResult randomized_svd_in_range(std::span<const float> w, std::int64_t m, std::int64_t n,
                                   const RsvdOptions& o) {
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

  // Subspace iteration on the Gram matrix of the smaller side (Halko et al. Alg. 4.4 with the QR
  // after every Gram product, i.e. after every second product with A), each Gram product one
  // fused pass over A, so the 2N+2 products cost N+2 passes:
  //   tall: Z_0 = Ω, Z_j = orth(AᵀA·Z_{j−1}), Q = orth(A·Z_N)
  //   wide: Q_0 = orth(A·Ω), Q_j = orth(AAᵀ·Q_{j−1})
  // Either way span Q = span (AAᵀ)^N·A·Ω, the subspace of Alg. 4.4 after N iterations.
  auto timed_gram = [&](auto&& f) {
    const auto t0 = Clock::now();
    f();
    gemm_s += std::chrono::duration<double>(Clock::now() - t0).count();
    products += 2;
  };
  MatF q;
  if (m >= n) {
    MatF z = std::move(omega);
    for (int it = 0; it < o.niter; ++it) {
      timed_gram([&] { z = to_eigen(gram_rows(a, to_skinny(z), o.parallel)); });
      orthonormalize(z);
    }
    timed([&] { q = to_eigen(product(a, to_skinny(z), o.parallel)); });
  } else {
    timed([&] { q = to_eigen(product(a, to_skinny(omega), o.parallel)); });
    for (int it = 0; it < o.niter; ++it) {
      orthonormalize(q);
      timed_gram([&] { q = to_eigen(gram_cols(a, to_skinny(q), o.parallel)); });
    }
  }
  orthonormalize(q);
  MatF bt;  // Bᵀ = Aᵀ·Q (n×l)
  timed([&] { bt = to_eigen(product_t(a, to_skinny(q), o.parallel)); });
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

}  // namespace

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

std::size_t row_block_count(std::int64_t m) {
  return static_cast<std::size_t>((m + kRowBlock - 1) / kRowBlock);
}

void subtract_product_visit(std::span<float> c, std::span<const float> a, std::span<const float> b,
                            std::int64_t m, std::int64_t k, std::int64_t n, float scale,
                            const ParallelFor& parallel, const RowPanelVisitor& visit) {
  CKPT_ASSERT(static_cast<std::int64_t>(c.size()) == m * n &&
              static_cast<std::int64_t>(a.size()) == m * k &&
              static_cast<std::int64_t>(b.size()) == k * n);
  Eigen::Map<RowMatF> cm(c.data(), m, n);
  const ConstRowMap am(a.data(), m, k), bm(b.data(), k, n);
  // Panel rows: ~kPanelBytes of C per panel, so a visit after the product finds it in L2. Fixed
  // positions inside the fixed blocks (a function of n only): the same roundings for any split.
  constexpr std::int64_t kPanelBytes = 256 * 1024;
  const std::int64_t panel =
      std::clamp<std::int64_t>(kPanelBytes / (std::max<std::int64_t>(n, 1) * 4), 8, kRowBlock);
  for_blocks(m, parallel, [&](std::int64_t r0, std::int64_t len) {
    const std::size_t block = static_cast<std::size_t>(r0 / kRowBlock);
    for (std::int64_t p0 = r0; p0 < r0 + len; p0 += panel) {
      const std::int64_t rows = std::min(panel, r0 + len - p0);
      if (k > 0) cm.middleRows(p0, rows).noalias() -= scale * (am.middleRows(p0, rows) * bm);
      if (visit) visit(block, p0, rows);
    }
  });
}

void subtract_product(std::span<float> c, std::span<const float> a, std::span<const float> b,
                      std::int64_t m, std::int64_t k, std::int64_t n, float scale,
                      const ParallelFor& parallel) {
  subtract_product_visit(c, a, b, m, k, n, scale, parallel, {});
}

double frobenius_sq(std::span<const float> w) {
  // Eight f64 lanes (vectorizable without -ffast-math; the summation order is fixed, so the result
  // does not depend on threads), added up at the end.
  double lane[8] = {};
  const std::size_t n = w.size(), n8 = n / 8 * 8;
  const float* p = w.data();
  for (std::size_t i = 0; i < n8; i += 8)
    for (std::size_t l = 0; l < 8; ++l)
      lane[l] += static_cast<double>(p[i + l]) * p[i + l];
  for (std::size_t i = n8; i < n; ++i)
    lane[i - n8] += static_cast<double>(p[i]) * p[i];
  double s = 0;
  for (double x : lane)
    s += x;
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
