#include "ckptkit/decompose/lq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

using Vec = std::vector<float>;

/// √(mean) of a non-negative sum over `count` entries, as f32.
float root_mean(double sum, std::int64_t count) {
  return static_cast<float>(std::sqrt(sum / static_cast<double>(std::max<std::int64_t>(count, 1))));
}

/// Floors tiny entries at 1e-6 of the largest (all-zero: ones) so that 1/x stays finite.
void floor_weights(Vec& v) {
  if (v.empty()) return;
  const float mx = *std::max_element(v.begin(), v.end());
  if (!(mx > 0)) {
    std::fill(v.begin(), v.end(), 1.0f);
    return;
  }
  const float lo = mx * 1e-6f;
  for (float& x : v)
    x = std::max(x, lo);
}

/// L1 (rows × k) and L2 (k × cols) of the rank-k SVD of diag(row)·R·diag(col), unscaled.
void lowrank(const Vec& R, std::int64_t rows, std::int64_t cols, const LqParams& p,
             const LqScaling* sc, const std::string& stream, Vec& L1, Vec& L2) {
  const int k = p.rank;
  const Vec* src = &R;
  Vec scaled;
  if (sc) {
    scaled = R;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float ri = sc->row[static_cast<std::size_t>(i)];
      float* rowp = scaled.data() + i * cols;
      for (std::int64_t j = 0; j < cols; ++j)
        rowp[j] *= ri * sc->col[static_cast<std::size_t>(j)];
    }
    src = &scaled;
  }
  SvdResult svd;
  if (p.exact_svd) {
    svd = exact_svd(*src, rows, cols);
  } else {
    RsvdOptions o;
    o.rank = k;
    o.oversample = p.oversample;
    o.niter = p.niter;
    o.seed = p.seed;
    o.stream = stream;
    o.parallel = p.parallel;
    svd = randomized_svd(*src, rows, cols, o).svd;
  }
  // LQ-LoRA splits the singular values symmetrically: L1 = U·√S, L2 = √S·Vᵀ.
  L1.assign(static_cast<std::size_t>(rows * k), 0.0f);
  L2.assign(static_cast<std::size_t>(k * cols), 0.0f);
  for (int t = 0; t < k && t < svd.k; ++t) {
    const float rs = std::sqrt(std::max(svd.S[static_cast<std::size_t>(t)], 0.0f));
    for (std::int64_t i = 0; i < rows; ++i) {
      float v = svd.U[static_cast<std::size_t>(i * svd.k + t)] * rs;
      if (sc) v /= sc->row[static_cast<std::size_t>(i)];
      L1[static_cast<std::size_t>(i * k + t)] = v;
    }
    const float* vt = svd.Vt.data() + static_cast<std::int64_t>(t) * cols;
    float* l2 = L2.data() + static_cast<std::int64_t>(t) * cols;
    for (std::int64_t j = 0; j < cols; ++j) {
      float v = vt[j] * rs;
      if (sc) v /= sc->col[static_cast<std::size_t>(j)];
      l2[j] = v;
    }
  }
}

}  // namespace

const char* lq_order_name(LqOrder o) {
  return o == LqOrder::SvdFirst ? "svd-first" : "quantize-first";
}

LqScaling lq_scaling(const LqWeights& w, std::int64_t rows, std::int64_t cols) {
  LqScaling s;
  s.row.assign(static_cast<std::size_t>(rows), 1.0f);
  s.col.assign(static_cast<std::size_t>(cols), 1.0f);
  if (!w.fisher.empty()) {
    // reduce_before_sqrt: means of F, then the square root.
    std::vector<double> rs(static_cast<std::size_t>(rows), 0.0),
        cs(static_cast<std::size_t>(cols), 0.0);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) {
        const double f = w.fisher[static_cast<std::size_t>(i * cols + j)];
        rs[static_cast<std::size_t>(i)] += f;
        cs[static_cast<std::size_t>(j)] += f;
      }
    for (std::int64_t i = 0; i < rows; ++i)
      s.row[static_cast<std::size_t>(i)] = root_mean(rs[static_cast<std::size_t>(i)], cols);
    for (std::int64_t j = 0; j < cols; ++j)
      s.col[static_cast<std::size_t>(j)] = root_mean(cs[static_cast<std::size_t>(j)], rows);
  }
  if (!w.col.empty())
    for (std::int64_t j = 0; j < cols; ++j)
      s.col[static_cast<std::size_t>(j)] = std::sqrt(w.col[static_cast<std::size_t>(j)]);
  if (!w.row.empty())
    for (std::int64_t i = 0; i < rows; ++i)
      s.row[static_cast<std::size_t>(i)] = std::sqrt(w.row[static_cast<std::size_t>(i)]);
  floor_weights(s.row);
  floor_weights(s.col);
  return s;
}

double lq_weighted_sq(std::span<const float> err, const LqWeights* w, std::int64_t rows,
                      std::int64_t cols) {
  double acc = 0;
  if (!w || w->empty()) {
    for (float e : err)
      acc += static_cast<double>(e) * e;
    return acc;
  }
  for (std::int64_t i = 0; i < rows; ++i) {
    const double ri = w->row.empty() ? 1.0 : w->row[static_cast<std::size_t>(i)];
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::size_t k = static_cast<std::size_t>(i * cols + j);
      double f = ri;
      if (!w->fisher.empty()) f *= w->fisher[k];
      if (!w->col.empty()) f *= w->col[static_cast<std::size_t>(j)];
      acc += f * static_cast<double>(err[k]) * err[k];
    }
  }
  return acc;
}

LqResult lq_decompose_matrix(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                             const LqParams& p, const LqWeights* weights,
                             const std::string& stream) {
  CKPT_ASSERT(static_cast<std::int64_t>(w.size()) == rows * cols);
  if (p.rank < 0 || p.rank >= std::min(rows, cols))
    fail(ErrorKind::Usage, "rank " + std::to_string(p.rank) + " outside [0, min(rows, cols) = " +
                               std::to_string(std::min(rows, cols)) + ")");
  if (p.max_iter < 1) fail(ErrorKind::Usage, "--max-iter must be at least 1");
  const bool weighted = weights && !weights->empty();
  std::optional<LqScaling> sc;
  if (weighted) sc = lq_scaling(*weights, rows, cols);
  const LqScaling* scp = sc ? &*sc : nullptr;
  const std::size_t n = w.size();

  LqResult best;
  best.norm = std::sqrt(lq_weighted_sq(w, weights, rows, cols));
  best.error = std::numeric_limits<double>::infinity();
  const int iters = p.rank == 0 ? 1 : p.max_iter;  // no low-rank part: one quantization
  Vec X(w.begin(), w.end());                       // what is quantized: W − L
  Vec deq(n), E(n), L1, L2;
  double last = std::numeric_limits<double>::infinity();
  for (int t = 1; t <= iters; ++t) {
    quant::QuantizedTensor q;
    if (p.rank == 0) {
      q = quant::quantize(X, p.spec);
      quant::dequantize(q, deq);
      for (std::size_t i = 0; i < n; ++i)
        E[i] = X[i] - deq[i];
      L1.clear();
      L2.clear();
    } else if (p.order == LqOrder::SvdFirst) {
      // L = SVD_r(W − Q_{t−1}) (Q₀ = 0), then Q = quantize(W − L).
      Vec R(w.begin(), w.end());
      if (t > 1)
        for (std::size_t i = 0; i < n; ++i)
          R[i] -= deq[i];
      lowrank(R, rows, cols, p, scp, stream, L1, L2);
      X.assign(w.begin(), w.end());
      subtract_product(X, L1, L2, rows, p.rank, cols, 1.0f, p.parallel);
      q = quant::quantize(X, p.spec);
      quant::dequantize(q, deq);
      for (std::size_t i = 0; i < n; ++i)
        E[i] = X[i] - deq[i];
    } else {
      // LoftQ: Q = quantize(W − L_{t−1}) (L₀ = 0), then L = SVD_r(W − Q).
      q = quant::quantize(X, p.spec);
      quant::dequantize(q, deq);
      Vec R(w.begin(), w.end());
      for (std::size_t i = 0; i < n; ++i)
        R[i] -= deq[i];
      lowrank(R, rows, cols, p, scp, stream, L1, L2);
      E = R;
      subtract_product(E, L1, L2, rows, p.rank, cols, 1.0f, p.parallel);
      X.assign(w.begin(), w.end());
      subtract_product(X, L1, L2, rows, p.rank, cols, 1.0f, p.parallel);
    }
    const double e = std::sqrt(lq_weighted_sq(E, weights, rows, cols));
    best.errors.push_back(e);
    if (e < best.error) {
      best.error = e;
      best.best_iter = t;
      best.q = std::move(q);
      best.L1 = L1;
      best.L2 = L2;
    }
    if (!(e < last)) break;  // the error stopped falling: LQ-LoRA's rule
    last = e;
  }
  return best;
}

std::vector<float> lq_lowrank(const LqResult& r, std::int64_t rows, std::int64_t cols) {
  Vec out(static_cast<std::size_t>(rows * cols), 0.0f);
  const std::int64_t k = rows > 0 ? static_cast<std::int64_t>(r.L1.size()) / rows : 0;
  if (k > 0) subtract_product(out, r.L1, r.L2, rows, k, cols, -1.0f);
  return out;
}

double lq_plain_error(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                      const quant::QuantSpec& spec, const LqWeights* weights) {
  const quant::QuantizedTensor q = quant::quantize(w, spec);
  Vec e(w.size());
  quant::dequantize(q, e);
  for (std::size_t i = 0; i < e.size(); ++i)
    e[i] = w[i] - e[i];
  return std::sqrt(lq_weighted_sq(e, weights, rows, cols));
}

std::vector<double> lq_candidate_errors(std::span<const float> w, std::int64_t rows,
                                        std::int64_t cols, const LqParams& params,
                                        const std::vector<quant::QuantSpec>& specs, int iters,
                                        const LqWeights* weights, const std::string& stream) {
  std::vector<double> out;
  out.reserve(specs.size());
  if ((iters > 1 || params.order == LqOrder::QuantizeFirst) && params.rank > 0) {
    LqParams p = params;
    p.max_iter = iters;
    for (const auto& s : specs) {
      p.spec = s;
      const double e = lq_decompose_matrix(w, rows, cols, p, weights, stream).error;
      out.push_back(e * e);
    }
    return out;
  }
  if (params.rank < 0 || params.rank >= std::min(rows, cols))
    fail(ErrorKind::Usage,
         "rank " + std::to_string(params.rank) +
             " outside [0, min(rows, cols) = " + std::to_string(std::min(rows, cols)) + ")");
  // Iteration 1 of svd-first: L = SVD_r(W) (weighted), X = W − L, then quantize X per config.
  Vec X(w.begin(), w.end());
  if (params.rank > 0) {
    std::optional<LqScaling> sc;
    if (weights && !weights->empty()) sc = lq_scaling(*weights, rows, cols);
    Vec L1, L2;
    lowrank(X, rows, cols, params, sc ? &*sc : nullptr, stream, L1, L2);
    subtract_product(X, L1, L2, rows, params.rank, cols, 1.0f, params.parallel);
  }
  Vec deq(X.size());
  for (const auto& s : specs) {
    const quant::QuantizedTensor q = quant::quantize(X, s);
    quant::dequantize(q, deq);
    for (std::size_t i = 0; i < deq.size(); ++i)
      deq[i] = X[i] - deq[i];
    out.push_back(lq_weighted_sq(deq, weights, rows, cols));
  }
  return out;
}

LqAdapterFactors lq_adapter_factors(const LqResult& r, double scaling) {
  CKPT_ASSERT(scaling > 0);
  const float inv = static_cast<float>(1.0 / std::sqrt(scaling));
  LqAdapterFactors f{r.L2, r.L1};
  for (float& x : f.A)
    x *= inv;
  for (float& x : f.B)
    x *= inv;
  return f;
}

}  // namespace ckpt
