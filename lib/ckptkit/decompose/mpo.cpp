#include "ckptkit/decompose/mpo.hpp"

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::int64_t product(const std::vector<std::int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::int64_t{1}, std::multiplies<>());
}

// Offsets of every row (resp. column) multi-index inside the interleaved tensor (i1,j1,...,iN,jN):
// the permutation is separable, so T[off_row[r] + off_col[c]] = W[r, c].
std::vector<std::int64_t> interleaved_offsets(const MpoShape& s, bool rows) {
  const std::size_t n = s.cores();
  std::vector<std::int64_t> stride(2 * n);
  std::int64_t acc = 1;
  for (std::size_t p = 2 * n; p-- > 0;) {
    stride[p] = acc;
    acc *= (p % 2 == 0) ? s.row[p / 2] : s.col[p / 2];
  }
  const auto& dims = rows ? s.row : s.col;
  std::vector<std::int64_t> off(static_cast<std::size_t>(product(dims)));
  for (std::size_t idx = 0; idx < off.size(); ++idx) {
    std::int64_t rem = static_cast<std::int64_t>(idx), o = 0;
    for (std::size_t k = n; k-- > 0;) {
      o += (rem % dims[k]) * stride[2 * k + (rows ? 0 : 1)];
      rem /= dims[k];
    }
    off[idx] = o;
  }
  return off;
}

std::vector<std::int64_t> prime_factors(std::int64_t n) {
  std::vector<std::int64_t> f;
  for (std::int64_t p = 2; p * p <= n; ++p)
    while (n % p == 0) {
      f.push_back(p);
      n /= p;
    }
  if (n > 1) f.push_back(n);
  return f;
}

}  // namespace

std::vector<std::int64_t> Mpo::bonds() const {
  std::vector<std::int64_t> b{1};
  for (const auto& c : cores)
    b.push_back(c.r_right);
  return b;
}

std::int64_t Mpo::params() const {
  std::int64_t p = 0;
  for (const auto& c : cores)
    p += c.size();
  return p;
}

std::optional<std::vector<std::int64_t>> balanced_factorization(std::int64_t n, int cores) {
  if (cores < 1 || n < 1) return std::nullopt;
  auto primes = prime_factors(n);
  if (static_cast<int>(primes.size()) < cores) return std::nullopt;
  std::sort(primes.rbegin(), primes.rend());
  // Longest-processing-time greedy: each prime (largest first) joins the smallest factor so far.
  std::vector<std::int64_t> bins(static_cast<std::size_t>(cores), 1);
  for (auto p : primes)
    *std::min_element(bins.begin(), bins.end()) *= p;
  std::sort(bins.begin(), bins.end());
  // Smallest factors at the ends, largest in the middle (mpo_lab's [4,4,8,8,4] for 4096).
  std::vector<std::int64_t> out(bins.size());
  std::size_t lo = 0, hi = bins.size();
  for (std::size_t k = 0; k < bins.size(); ++k)
    out[k % 2 == 0 ? lo++ : --hi] = bins[k];
  return out;
}

std::vector<std::int64_t> mpo_bonds_for_cap(const MpoShape& s, std::int64_t cap) {
  const std::size_t n = s.cores();
  std::vector<std::int64_t> b(n + 1, 1);
  for (std::size_t k = 1; k < n; ++k) {
    std::int64_t right = 1;
    for (std::size_t l = k; l < n; ++l)
      right *= s.row[l] * s.col[l];
    std::int64_t r = std::min(b[k - 1] * s.row[k - 1] * s.col[k - 1], right);
    if (cap > 0) r = std::min(r, cap);
    b[k] = r;
  }
  return b;
}

std::int64_t mpo_param_count(const MpoShape& s, const std::vector<std::int64_t>& bonds) {
  std::int64_t p = 0;
  for (std::size_t k = 0; k < s.cores(); ++k)
    p += bonds[k] * s.row[k] * s.col[k] * bonds[k + 1];
  return p;
}

std::int64_t mpo_cap_for_params(const MpoShape& s, std::int64_t params) {
  const auto full = mpo_bonds_for_cap(s, 0);
  std::int64_t hi = *std::max_element(full.begin(), full.end());
  if (mpo_param_count(s, mpo_bonds_for_cap(s, 1)) > params) return 0;
  std::int64_t lo = 1;  // invariant: lo fits
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo + 1) / 2;
    if (mpo_param_count(s, mpo_bonds_for_cap(s, mid)) <= params)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

std::string mpo_shape_problem(const MpoShape& s, std::int64_t rows, std::int64_t cols) {
  if (s.row.empty() || s.row.size() != s.col.size())
    return "row shape [" + join(s.row) + "] and column shape [" + join(s.col) +
           "] must have the same number (>= 1) of factors";
  for (std::size_t k = 0; k < s.cores(); ++k)
    if (s.row[k] < 1 || s.col[k] < 1) return "factors must be positive";
  if (product(s.row) != rows)
    return "row shape [" + join(s.row) + "] multiplies to " + std::to_string(product(s.row)) +
           ", not the " + std::to_string(rows) + " rows";
  if (product(s.col) != cols)
    return "column shape [" + join(s.col) + "] multiplies to " + std::to_string(product(s.col)) +
           ", not the " + std::to_string(cols) + " columns";
  return "";
}

Mpo mpo_decompose(const float* w, std::int64_t rows, std::int64_t cols, const MpoShape& shape,
                  const MpoTruncation& trunc) {
  if (const auto p = mpo_shape_problem(shape, rows, cols); !p.empty()) fail(ErrorKind::Usage, p);
  if (trunc.bond_cap < 0) fail(ErrorKind::Usage, "bond cap must be positive");
  if (!(trunc.tolerance >= 0)) fail(ErrorKind::Usage, "tolerance must be >= 0");
  const std::size_t n = shape.cores();
  Mpo m;
  m.shape = shape;
  m.full_bonds = mpo_bonds_for_cap(shape, 0);
  m.full_bonds = std::vector<std::int64_t>(m.full_bonds.begin() + 1, m.full_bonds.end() - 1);

  // The interleaved tensor, flattened row-major: the sweep's working remainder.
  const auto off_r = interleaved_offsets(shape, true), off_c = interleaved_offsets(shape, false);
  std::vector<float> rem(static_cast<std::size_t>(rows * cols));
  double sq = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c];
      rem[static_cast<std::size_t>(off_r[r] + off_c[c])] = v;
      sq += static_cast<double>(v) * v;
    }
  m.norm = std::sqrt(sq);
  // The TT-SVD rule: each of the N-1 truncations may drop ε‖W‖/√(N−1), so the total is ≤ ε‖W‖.
  const double delta =
      n > 1 ? trunc.tolerance * m.norm / std::sqrt(static_cast<double>(n - 1)) : 0.0;

  std::int64_t r_left = 1;
  for (std::size_t k = 0; k + 1 < n; ++k) {
    const std::int64_t mrows = r_left * shape.row[k] * shape.col[k];
    const std::int64_t ncols = static_cast<std::int64_t>(rem.size()) / mrows;
    Eigen::Map<const RowMat> a(rem.data(), mrows, ncols);
    Eigen::BDCSVD<Eigen::MatrixXf> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    if (svd.info() != Eigen::Success)
      fail(ErrorKind::Numeric, "SVD of the " + std::to_string(mrows) + "x" + std::to_string(ncols) +
                                   " unfolding at bond " + std::to_string(k + 1) +
                                   " did not converge");
    const auto& s = svd.singularValues();
    const std::int64_t full = s.size();
    std::int64_t r = full;
    if (trunc.bond_cap > 0) r = std::min(r, trunc.bond_cap);
    if (trunc.tolerance > 0) {
      // Smallest rank whose dropped tail stays within delta (keep at least one).
      double tail = 0;
      std::int64_t keep = full;
      while (keep > 1) {
        const double t = tail + static_cast<double>(s[keep - 1]) * s[keep - 1];
        if (std::sqrt(t) > delta) break;
        tail = t;
        --keep;
      }
      r = std::min(r, keep);
    }
    double dropped = 0;
    for (std::int64_t l = r; l < full; ++l)
      dropped += static_cast<double>(s[l]) * s[l];
    m.discarded.push_back(std::sqrt(dropped));

    MpoCore core{r_left, shape.row[k], shape.col[k], r, {}};
    core.data.resize(static_cast<std::size_t>(mrows * r));
    Eigen::Map<RowMat>(core.data.data(), mrows, r) = svd.matrixU().leftCols(r);
    m.cores.push_back(std::move(core));

    // Carry diag(σ)·Vᵀ: (r x ncols) row-major is already the next unfolding's memory layout.
    std::vector<float> next(static_cast<std::size_t>(r * ncols));
    Eigen::Map<RowMat>(next.data(), r, ncols) =
        s.head(r).asDiagonal() * svd.matrixV().leftCols(r).transpose();
    rem.swap(next);
    r_left = r;
  }
  MpoCore last{r_left, shape.row[n - 1], shape.col[n - 1], 1, std::move(rem)};
  m.cores.push_back(std::move(last));
  return m;
}

std::vector<float> mpo_contract(const MpoShape& shape, const std::vector<MpoCore>& cores) {
  const std::size_t n = shape.cores();
  CKPT_ASSERT(cores.size() == n && n > 0);
  for (std::size_t k = 0; k < n; ++k) {
    CKPT_ASSERT(cores[k].i == shape.row[k] && cores[k].j == shape.col[k]);
    CKPT_ASSERT(static_cast<std::int64_t>(cores[k].data.size()) == cores[k].size());
    CKPT_ASSERT(k == 0 ? cores[k].r_left == 1 : cores[k].r_left == cores[k - 1].r_right);
  }
  CKPT_ASSERT(cores.back().r_right == 1);
  // acc is (i1 j1 ... ik jk) x r_k row-major; multiplying by core k+1 as r_k x (i j r_{k+1})
  // gives the next prefix, again a contiguous reshape.
  std::vector<float> acc = cores[0].data;
  std::int64_t prefix = cores[0].i * cores[0].j;
  for (std::size_t k = 1; k < n; ++k) {
    const auto& c = cores[k];
    const std::int64_t tail = c.i * c.j * c.r_right;
    std::vector<float> next(static_cast<std::size_t>(prefix * tail));
    Eigen::Map<RowMat>(next.data(), prefix, tail).noalias() =
        Eigen::Map<const RowMat>(acc.data(), prefix, c.r_left) *
        Eigen::Map<const RowMat>(c.data.data(), c.r_left, tail);
    acc.swap(next);
    prefix *= c.i * c.j;
  }
  const std::int64_t rows = product(shape.row), cols = product(shape.col);
  const auto off_r = interleaved_offsets(shape, true), off_c = interleaved_offsets(shape, false);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      w[static_cast<std::size_t>(r * cols + c)] =
          acc[static_cast<std::size_t>(off_r[r] + off_c[c])];
  return w;
}

}  // namespace ckpt
