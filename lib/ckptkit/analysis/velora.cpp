#include "ckptkit/analysis/velora.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <string>

#include "ckptkit/core/error.hpp"

namespace ckpt::velora {
namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VecD = Eigen::VectorXd;

/// Σ over the M diagonal g×g blocks of the zero-padded D×D Gram matrix: the sub-token Gram
/// Σ s sᵀ, without a second pass over the tokens.
MatD subtoken_gram(const MatD& gram, std::int64_t groups, std::int64_t g) {
  const std::int64_t d = gram.rows();
  MatD out = MatD::Zero(g, g);
  for (std::int64_t m = 0; m < groups; ++m) {
    const std::int64_t begin = m * g;
    const std::int64_t len = std::min(g, d - begin);
    if (len <= 0) break;
    out.topLeftCorner(len, len) += gram.block(begin, begin, len, len);
  }
  return out;
}

/// Σ over the M sub-tokens of the column sums (padding contributes zeros).
VecD subtoken_sum(const VecD& colsum, std::int64_t groups, std::int64_t g) {
  const std::int64_t d = colsum.size();
  VecD out = VecD::Zero(g);
  for (std::int64_t m = 0; m < groups; ++m) {
    const std::int64_t begin = m * g;
    const std::int64_t len = std::min(g, d - begin);
    if (len <= 0) break;
    out.head(len) += colsum.segment(begin, len);
  }
  return out;
}

/// PEFT's _normalize_projection: a zero vector becomes the normalised all-ones vector.
VecD normalized(VecD v) {
  const double n = v.norm();
  if (!(n > 0)) return VecD::Constant(v.size(), 1.0 / std::sqrt(static_cast<double>(v.size())));
  return v / n;
}

/// The deterministic sign rule of the header comment.
void fix_sign(VecD& v, const VecD& sum) {
  const double dot = v.dot(sum);
  if (std::abs(dot) > 1e-9 * sum.norm()) {
    if (dot < 0) v = -v;
    return;
  }
  Eigen::Index best = 0;
  for (Eigen::Index i = 1; i < v.size(); ++i)
    if (std::abs(v[i]) > std::abs(v[best])) best = i;
  if (v[best] < 0) v = -v;
}

/// Sub-token sizes up to this use the full eigensolver; larger ones the cheaper path below.
constexpr Eigen::Index kFullEigenMax = 32;

VecD top_eigenvector_full(const MatD& gram_g) {
  Eigen::SelfAdjointEigenSolver<MatD> es(gram_g);
  // Eigenvalues come in increasing order: the last column is the top singular direction of S.
  return es.eigenvectors().col(gram_g.rows() - 1).normalized();
}

/// The top eigenvector of the sub-token Gram. For large g (a sweep at M = 1 has g = D), computing
/// all eigenvectors costs ~9g³ flops; instead take the eigenvalues only (tridiagonalisation,
/// ~4/3 g³), then inverse iteration with the shift λ_max(1 + 1e-9) from `start` (the mean
/// direction, so the result is deterministic). Any vector it returns has a Rayleigh quotient within
/// ~1e-9 relative of λ_max, so the energy kept is optimal even when λ_1 ≈ λ_2. Falls back to the
/// full solver if the Cholesky factorisation fails or the quotient is off.
VecD top_eigenvector(const MatD& gram_g, const VecD& start) {
  const Eigen::Index g = gram_g.rows();
  if (!(gram_g.trace() > 0)) return normalized(VecD::Zero(g));
  if (g <= kFullEigenMax) return top_eigenvector_full(gram_g);
  Eigen::SelfAdjointEigenSolver<MatD> es(gram_g, Eigen::EigenvaluesOnly);
  const double lmax = es.eigenvalues()(g - 1);
  const double shift = lmax * (1 + 1e-9);
  MatD a = -gram_g;
  a.diagonal().array() += shift;  // shift·I − G: positive definite
  Eigen::LLT<MatD> llt(a);
  if (llt.info() != Eigen::Success) return top_eigenvector_full(gram_g);
  VecD v = normalized(start);
  for (int it = 0; it < 6; ++it) {
    VecD w = llt.solve(v);
    const double n = w.norm();
    if (!(n > 0) || !std::isfinite(n)) return top_eigenvector_full(gram_g);
    w /= n;
    const double change = std::min((w - v).norm(), (w + v).norm());
    v = w;
    if (change < 1e-13) break;
  }
  if (v.dot(gram_g * v) < lmax * (1 - 1e-8)) return top_eigenvector_full(gram_g);
  return v;
}

/// Per-row z = ⟨s_m, v⟩ for every sub-token m of `n` rows, into z (n × groups, row-major).
void project_rows(const double* rows, std::int64_t n, std::int64_t d, std::int64_t groups,
                  std::int64_t g, const VecD& v, RowMat& z) {
  z.resize(n, groups);
  for (std::int64_t r = 0; r < n; ++r) {
    const double* x = rows + r * d;
    for (std::int64_t m = 0; m < groups; ++m) {
      const std::int64_t begin = m * g;
      const std::int64_t len = std::min(g, d - begin);
      double acc = 0;
      for (std::int64_t j = 0; j < len; ++j)
        acc += x[begin + j] * v[j];
      z(r, m) = acc;
    }
  }
}

/// ‖A‖_F² of a symmetric matrix of which only the lower triangle is filled.
double sym_lower_norm2(const MatD& a) {
  double diag = 0, off = 0;
  for (Eigen::Index j = 0; j < a.cols(); ++j) {
    diag += a(j, j) * a(j, j);
    for (Eigen::Index i = j + 1; i < a.rows(); ++i)
      off += a(i, j) * a(i, j);
  }
  return diag + 2 * off;
}

}  // namespace

std::string_view init_name(Init init) {
  return init == Init::BatchAverage ? "batch-average" : "top-singular";
}

std::optional<Init> parse_init(std::string_view s) {
  if (s == "batch-average" || s == "batch_average" || s == "batch_average_once")
    return Init::BatchAverage;
  if (s == "top-singular" || s == "top_singular") return Init::TopSingular;
  return std::nullopt;
}

std::int64_t group_dim(std::int64_t dim, std::int64_t groups) {
  if (groups < 1 || groups > dim)
    fail(ErrorKind::Usage, "--groups " + std::to_string(groups) + " must be in [1, " +
                               std::to_string(dim) + "] (the input width)");
  return (dim + groups - 1) / groups;
}

RowSource matrix_source(std::span<const double> values, std::int64_t dim, std::int64_t block_rows) {
  RowSource src;
  src.dim = dim;
  src.for_each_block = [values, dim, block_rows](const BlockFn& fn) {
    const std::int64_t rows = dim > 0 ? static_cast<std::int64_t>(values.size()) / dim : 0;
    for (std::int64_t r = 0; r < rows; r += block_rows)
      fn(values.data() + r * dim, std::min(block_rows, rows - r));
  };
  return src;
}

Analysis analyze(const RowSource& x, std::span<const std::int64_t> groups,
                 std::span<const Init> inits) {
  const std::int64_t d = x.dim;
  Analysis out;
  out.dim = d;
  for (std::int64_t m : groups)
    (void)group_dim(d, m);

  // Pass 1: column sums, ‖X‖² and the D×D Gram XᵀX (lower triangle), all in f64.
  VecD colsum = VecD::Zero(d);
  MatD gram = MatD::Zero(d, d);
  x.for_each_block([&](const double* rows, std::int64_t n) {
    Eigen::Map<const RowMat> b(rows, n, d);
    colsum += b.colwise().sum().transpose();
    out.x_norm2 += b.squaredNorm();
    gram.selfadjointView<Eigen::Lower>().rankUpdate(b.transpose());
    out.tokens += n;
  });
  if (out.tokens == 0) fail(ErrorKind::Format, "no tokens (0 rows)");
  out.gram_norm2 = sym_lower_norm2(gram);
  // Mirror in place (no second D×D copy: D is 11008 for a Llama-7B down_proj).
  gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();

  // The vectors, from the statistics of pass 1.
  for (std::int64_t m : groups) {
    const std::int64_t g = group_dim(d, m);
    const VecD sum = subtoken_sum(colsum, m, g);
    MatD gram_g;
    for (Init init : inits) {
      VecD v;
      if (init == Init::BatchAverage) {
        v = normalized(sum);
      } else {
        if (gram_g.size() == 0) gram_g = subtoken_gram(gram, m, g);
        v = top_eigenvector(gram_g, sum);
      }
      fix_sign(v, sum);
      Projection p;
      p.groups = m;
      p.group_dim = g;
      p.init = init;
      p.v.assign(v.data(), v.data() + v.size());
      out.projections.push_back(std::move(p));
    }
  }

  // Pass 2: C = ZᵀZ (M×M) per projection, z = ⟨s, v⟩; the fidelity follows from C alone.
  std::vector<MatD> c(out.projections.size());
  std::vector<VecD> vs(out.projections.size());
  for (std::size_t i = 0; i < c.size(); ++i) {
    c[i] = MatD::Zero(out.projections[i].groups, out.projections[i].groups);
    vs[i] = Eigen::Map<const VecD>(out.projections[i].v.data(), out.projections[i].group_dim);
  }
  RowMat z;
  x.for_each_block([&](const double* rows, std::int64_t n) {
    for (std::size_t i = 0; i < c.size(); ++i) {
      const auto& p = out.projections[i];
      project_rows(rows, n, d, p.groups, p.group_dim, vs[i], z);
      c[i].selfadjointView<Eigen::Lower>().rankUpdate(z.transpose());
    }
  });

  for (std::size_t i = 0; i < c.size(); ++i) {
    auto& p = out.projections[i];
    const MatD ci = c[i].selfadjointView<Eigen::Lower>();
    // w_m = ‖v restricted to the real (unpadded) columns of sub-token m‖².
    VecD w(p.groups);
    for (std::int64_t m = 0; m < p.groups; ++m) {
      const std::int64_t len = std::min(p.group_dim, d - m * p.group_dim);
      w[m] = len > 0 ? vs[i].head(len).squaredNorm() : 0.0;
    }
    const double kept = ci.trace();  // Σ z²
    const double c_norm2 = ci.squaredNorm();
    // ‖X̂ᵀX̂‖² = Σ C_mn² w_m w_n; ⟨X̂ᵀX̂, XᵀX⟩ = ‖C‖²; ‖X̂‖² = Σ C_mm w_m (derivation in docs).
    const double hat_norm2 = (ci.array().square() * (w * w.transpose()).array()).sum();
    const double grad_err2 = std::max(0.0, hat_norm2 - 2 * c_norm2 + out.gram_norm2);
    const double x_err2 = std::max(0.0, out.x_norm2 - 2 * kept + ci.diagonal().dot(w));
    p.fidelity.energy_kept = out.x_norm2 > 0 ? kept / out.x_norm2 : 1.0;
    p.fidelity.grad_rel_err = out.gram_norm2 > 0 ? std::sqrt(grad_err2 / out.gram_norm2) : 0.0;
    p.fidelity.x_rel_err = out.x_norm2 > 0 ? std::sqrt(x_err2 / out.x_norm2) : 0.0;
  }
  return out;
}

std::vector<std::int64_t> sweep_groups(std::int64_t dim, std::int64_t extra) {
  std::vector<std::int64_t> out;
  for (std::int64_t m = 1; m <= dim; m *= 2)
    out.push_back(m);
  if (dim >= 1) out.push_back(dim);
  if (extra >= 1 && extra <= dim) out.push_back(extra);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

MemoryEstimate memory_estimate(std::int64_t dim, std::int64_t groups, std::int64_t batch,
                               std::int64_t seq, std::int64_t act_bytes, std::int64_t z_bytes) {
  if (dim <= 0 || groups <= 0 || batch <= 0 || seq <= 0 || act_bytes <= 0 || z_bytes <= 0)
    fail(ErrorKind::Usage,
         "memory estimate: dim, groups, batch, seq and byte sizes must be positive");
  MemoryEstimate e;
  const auto tokens = static_cast<std::uint64_t>(batch) * static_cast<std::uint64_t>(seq);
  e.full_bytes = tokens * static_cast<std::uint64_t>(dim) * static_cast<std::uint64_t>(act_bytes);
  e.compressed_bytes =
      tokens * static_cast<std::uint64_t>(groups) * static_cast<std::uint64_t>(z_bytes);
  e.saved_bytes = e.full_bytes > e.compressed_bytes ? e.full_bytes - e.compressed_bytes : 0;
  e.ratio = static_cast<double>(e.full_bytes) / static_cast<double>(e.compressed_bytes);
  return e;
}

}  // namespace ckpt::velora
