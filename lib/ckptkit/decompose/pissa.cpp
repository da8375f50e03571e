#include "ckptkit/decompose/pissa.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/decompose/residual_stats.hpp"

namespace ckpt {
namespace {

// The smallest k with Σ_{i<k} σ_i² ≥ target, or 0 when the values never get there.
int rank_for_energy(const std::vector<float>& sigma, double target) {
  double acc = 0;
  for (std::size_t i = 0; i < sigma.size(); ++i) {
    acc += static_cast<double>(sigma[i]) * sigma[i];
    if (acc >= target) return static_cast<int>(i + 1);
  }
  return 0;
}

double sum_sq(const std::vector<float>& v, std::size_t begin, std::size_t end) {
  double s = 0;
  for (std::size_t i = begin; i < end && i < v.size(); ++i)
    s += static_cast<double>(v[i]) * v[i];
  return s;
}

// Fills A, B (and S for sorsa) from the chosen triplets `idx` of `svd`.
void build_factors(const SvdResult& svd, const std::vector<std::int64_t>& idx, SvdInitMethod method,
                   double scaling, SvdInitResult& r) {
  const std::int64_t m = svd.m, n = svd.n, k = static_cast<std::int64_t>(idx.size());
  r.A.assign(static_cast<std::size_t>(k * n), 0.0f);
  r.B.assign(static_cast<std::size_t>(m * k), 0.0f);
  if (method == SvdInitMethod::Sorsa) r.S.resize(static_cast<std::size_t>(k));
  for (std::int64_t t = 0; t < k; ++t) {
    const std::int64_t j = idx[static_cast<std::size_t>(t)];
    float fa = 1.0f, fb = 1.0f;
    if (method == SvdInitMethod::Sorsa) {
      r.S[static_cast<std::size_t>(t)] = svd.S[static_cast<std::size_t>(j)];
    } else {
      // PEFT pissa_init: S ← S/s, then √S on both sides (in f32, as torch does).
      const float sd = static_cast<float>(svd.S[static_cast<std::size_t>(j)] / scaling);
      fa = fb = std::sqrt(sd);
    }
    const float* vt = svd.Vt.data() + j * n;
    float* a = r.A.data() + t * n;
    for (std::int64_t c = 0; c < n; ++c)
      a[c] = fa * vt[c];
    for (std::int64_t row = 0; row < m; ++row)
      r.B[static_cast<std::size_t>(row * k + t)] =
          fb * svd.U[static_cast<std::size_t>(row * svd.k + j)];
  }
}

using residual::kLanes;
using residual::LaneStats;

void merge_into(const LaneStats& a, ResidualStats& s) {
  for (std::size_t l = 0; l < kLanes; ++l) {
    s.err_sq += a.sq[l];
    s.max_abs = std::max(s.max_abs, static_cast<double>(a.max_abs[l]));
    s.max_ulps = std::max(s.max_ulps, a.max_ulps[l]);
    s.max_res_ulps = std::max(s.max_res_ulps, a.max_res_ulps[l]);
    s.within_one_ulp += a.within[l];
  }
}

// Elements per chunk of the cast + statistics loop (stack buffers, a multiple of kLanes).
constexpr std::size_t kChunk = 512;

/// Runs body(j, lane) for j in [0, n): full groups of kLanes with constant trip counts (which the
/// compiler turns into vector code), then the tail.
template <class Body>
inline void for_lanes(std::size_t n, Body&& body) {
  const std::size_t full = n / kLanes * kLanes;
  for (std::size_t j0 = 0; j0 < full; j0 += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l)
      body(j0 + l, l);
  for (std::size_t j = full; j < n; ++j)
    body(j, j - full);
}

/// Casts res[0, n) into `dst` (the output dtype) and accumulates the cast's error against the
/// input entries `orig` (the input dtype). Contiguous storage-order ranges.
void cast_and_measure(const float* res, const std::byte* orig, std::byte* dst, std::size_t n,
                      const ResidualOutput& o, LaneStats& total) {
  const std::size_t in_size = dtype_size(o.in_dtype), out_size = dtype_size(o.out_dtype);
  const auto ulp = residual::UlpFormat::of(o.out_dtype);
  float stored[kChunk], w[kChunk];
  for (std::size_t c0 = 0; c0 < n; c0 += kChunk) {
    const std::size_t len = std::min(kChunk, n - c0);
    const float* r = res + c0;
    const std::span<std::byte> out(dst + c0 * out_size, len * out_size);
    encode_from_f32(o.out_dtype, std::span<const float>(r, len), out);
    decode_to_f32(o.out_dtype, out, std::span<float>(stored, len));
    decode_to_f32(o.in_dtype, std::span<const std::byte>(orig + c0 * in_size, len * in_size),
                  std::span<float>(w, len));
    residual::add_cast_stats(r, stored, w, len, ulp, total);
  }
}

/// Extraction (no output): Σ x² and max |x| of res[0, n).
void measure_only(const float* res, std::size_t n, LaneStats& total) {
  LaneStats acc = total;
  for_lanes(n, [&](std::size_t j, std::size_t l) {
    const float x = res[j];
    acc.sq[l] += static_cast<double>(x) * x;
    acc.max_abs[l] = std::max(acc.max_abs[l], std::fabs(x));
  });
  total = acc;
}

/// B as the residual multiplies it: B·diag(S) for sorsa, B otherwise.
std::vector<float> effective_b(const SvdInitResult& r, std::int64_t out) {
  std::vector<float> b = r.B;
  const std::int64_t k = r.rank;
  if (!r.S.empty())  // sorsa: (B·diag(S))·A as SORSA's merge does
    for (std::int64_t row = 0; row < out; ++row)
      for (std::int64_t t = 0; t < k; ++t)
        b[static_cast<std::size_t>(row * k + t)] *= r.S[static_cast<std::size_t>(t)];
  return b;
}

}  // namespace

const char* method_name(SvdInitMethod m) {
  switch (m) {
    case SvdInitMethod::Pissa:
      return "pissa";
    case SvdInitMethod::Milora:
      return "milora";
    case SvdInitMethod::Sorsa:
      return "sorsa";
    case SvdInitMethod::Extract:
      return "extract";
  }
  return "?";
}

double lora_scaling(double alpha, int rank, bool rslora) {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank;
}

SvdInitResult svd_init_matrix(std::span<const float> w, std::int64_t out, std::int64_t in,
                              const SvdInitParams& p, const std::string& stream) {
  const std::int64_t kmax = std::min(out, in);
  SvdInitResult r;
  r.norm_sq = p.norm_sq ? *p.norm_sq : frobenius_sq(w);
  const bool randomized = p.algorithm == SvdAlgorithm::Randomized;
  if (randomized && p.method == SvdInitMethod::Milora)
    fail(ErrorKind::Usage, "milora needs the smallest singular values: use the exact SVD");
  if (!p.energy && (p.rank < 1 || p.rank >= kmax))
    fail(ErrorKind::Usage, "rank " + std::to_string(p.rank) +
                               " must be in [1, min(out, in) = " + std::to_string(kmax) + ")");
  if (p.energy && !(*p.energy > 0.0 && *p.energy <= 1.0))
    fail(ErrorKind::Usage, "--energy must be in (0, 1]");

  SvdResult svd;
  std::vector<float> spectrum;  // what we know of the singular values, descending
  int k = p.rank;
  if (randomized) {
    RsvdOptions o;
    o.rank =
        p.energy
            ? static_cast<int>(std::min<std::int64_t>(p.max_rank > 0 ? p.max_rank : 256, kmax - 1))
            : p.rank;
    o.rank = std::max(o.rank, 1);
    o.oversample = p.oversample;
    o.niter = p.niter;
    o.seed = p.seed;
    o.stream = stream;
    o.parallel = p.parallel;
    RsvdResult rs = randomized_svd(w, out, in, o);
    svd = std::move(rs.svd);
    spectrum = std::move(rs.sketch_sigma);
    r.gemm_flops = rs.gemm_flops;
    r.gemm_seconds = rs.gemm_seconds;
    r.posterior_rel_err =
        r.norm_sq > 0 ? std::sqrt(std::max(0.0, r.norm_sq - rs.captured_sq) / r.norm_sq) : 0.0;
    if (p.energy) {
      // Total energy is exact (‖W‖²_F from the weights), only the partial sums come from the
      // sketch.
      k = rank_for_energy(std::vector<float>(spectrum.begin(), spectrum.begin() + o.rank),
                          *p.energy * r.norm_sq);
      if (k == 0) {
        k = o.rank;
        r.energy_met = false;
      }
    }
  } else {
    svd = exact_svd(w, out, in);
    spectrum = svd.S;
    if (p.energy) {
      k = rank_for_energy(spectrum, *p.energy * sum_sq(spectrum, 0, spectrum.size()));
      if (k == 0) k = static_cast<int>(kmax);
      if (k >= kmax) {  // a LoRA of full rank is no adapter: keep min(out, in) − 1
        k = static_cast<int>(kmax - 1);
        r.energy_met = false;
      }
      k = std::max(k, 1);
    }
  }

  r.rank = k;
  r.alpha = p.alpha.value_or(static_cast<double>(k));
  r.scaling = lora_scaling(r.alpha, k, p.rslora);
  if (!(r.scaling > 0) || !std::isfinite(r.scaling))
    fail(ErrorKind::Usage, "--alpha must be positive");

  std::vector<std::int64_t> idx(static_cast<std::size_t>(k));
  const std::int64_t first = p.method == SvdInitMethod::Milora ? kmax - k : 0;
  for (int t = 0; t < k; ++t)
    idx[static_cast<std::size_t>(t)] = first + t;
  build_factors(svd, idx, p.method, r.scaling, r);

  r.sigma_1 = spectrum.empty() ? 0.0 : spectrum[0];
  r.sigma_r = spectrum[static_cast<std::size_t>(k - 1)];
  if (static_cast<std::size_t>(k) < spectrum.size())
    r.sigma_r1 = spectrum[static_cast<std::size_t>(k)];
  r.captured_sq =
      sum_sq(svd.S, static_cast<std::size_t>(first), static_cast<std::size_t>(first + k));
  if (!randomized && r.norm_sq > 0) {
    const double left = p.method == SvdInitMethod::Milora
                            ? sum_sq(spectrum, 0, static_cast<std::size_t>(first))
                            : sum_sq(spectrum, static_cast<std::size_t>(k), spectrum.size());
    r.optimal_rel_err = std::sqrt(left / r.norm_sq);
  }
  return r;
}

void subtract_adapter_delta(std::span<float> w, const SvdInitResult& r, std::int64_t out,
                            std::int64_t in, const ParallelFor& parallel) {
  subtract_product(w, effective_b(r, out), r.A, out, r.rank, in, static_cast<float>(r.scaling),
                   parallel);
}

std::vector<float> adapter_delta(const SvdInitResult& r, std::int64_t out, std::int64_t in) {
  std::vector<float> d = matmul(effective_b(r, out), r.A, out, r.rank, in);
  const float s = static_cast<float>(r.scaling);
  if (s != 1.0f)
    for (float& x : d)
      x *= s;
  return d;
}

ResidualStats residual_in_place(std::span<float> w, const SvdInitResult& r, std::int64_t out,
                                std::int64_t in, bool transposed, const ResidualOutput& dst,
                                const ParallelFor& parallel) {
  const bool cast = !dst.out.empty();
  const std::size_t total = static_cast<std::size_t>(out * in);
  CKPT_ASSERT(w.size() == total);
  if (cast)
    CKPT_ASSERT(dst.out.size() == total * dtype_size(dst.out_dtype) &&
                dst.in.size() == total * dtype_size(dst.in_dtype));
  const std::vector<float> b = effective_b(r, out);
  const float scale = static_cast<float>(r.scaling);
  ResidualStats stats;

  // Statistics of storage rows [r0, r0 + rows) of width `cols` read from `res`.
  auto measure = [&](const float* res, std::int64_t r0, std::int64_t rows, std::int64_t cols,
                     LaneStats& acc) {
    const std::size_t first = static_cast<std::size_t>(r0 * cols);
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    if (cast)
      cast_and_measure(res + first, dst.in.data() + first * dtype_size(dst.in_dtype),
                       dst.out.data() + first * dtype_size(dst.out_dtype), n, dst, acc);
    else
      measure_only(res + first, n, acc);
  };

  if (!transposed || !cast) {
    // Fused: each panel is updated by the GEMM, then cast and measured while in cache. (Without
    // an output the orientation does not matter: the statistics are order-free up to the sum.)
    std::vector<LaneStats> per_block(row_block_count(out));
    subtract_product_visit(w, b, r.A, out, r.rank, in, scale, parallel,
                           [&](std::size_t block, std::int64_t r0, std::int64_t rows) {
                             measure(w.data(), r0, rows, in, per_block[block]);
                           });
    for (const auto& acc : per_block)
      merge_into(acc, stats);
    return stats;
  }
  // Stored transposed (Conv1D, embeddings): subtract, transpose back to storage order, then the
  // same cast and statistics over fixed row blocks of the stored [in, out] matrix.
  subtract_product(w, b, r.A, out, r.rank, in, scale, parallel);
  std::vector<float> t(total);
  for (std::int64_t row = 0; row < out; ++row)
    for (std::int64_t c = 0; c < in; ++c)
      t[static_cast<std::size_t>(c * out + row)] = w[static_cast<std::size_t>(row * in + c)];
  std::vector<LaneStats> per_block(row_block_count(in));
  // (k = 0: no product, only the panel visits over the fixed blocks.)
  subtract_product_visit(t, {}, {}, in, 0, out, 0.0f, parallel,
                         [&](std::size_t block, std::int64_t r0, std::int64_t rows) {
                           measure(t.data(), r0, rows, out, per_block[block]);
                         });
  for (const auto& acc : per_block)
    merge_into(acc, stats);
  return stats;
}

}  // namespace ckpt
