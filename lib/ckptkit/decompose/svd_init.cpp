#include "ckptkit/decompose/svd_init.hpp"

#include <algorithm>
#include <cmath>

#include "ckptkit/core/error.hpp"

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
  r.norm_sq = frobenius_sq(w);
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
  const std::int64_t k = r.rank;
  std::vector<float> b = r.B;
  if (!r.S.empty())
    for (std::int64_t row = 0; row < out; ++row)
      for (std::int64_t t = 0; t < k; ++t)
        b[static_cast<std::size_t>(row * k + t)] *= r.S[static_cast<std::size_t>(t)];
  subtract_product(w, b, r.A, out, k, in, static_cast<float>(r.scaling), parallel);
}

std::vector<float> adapter_delta(const SvdInitResult& r, std::int64_t out, std::int64_t in) {
  const std::int64_t k = r.rank;
  std::vector<float> b = r.B;
  if (!r.S.empty())  // sorsa: (B·diag(S))·A as SORSA's merge does
    for (std::int64_t row = 0; row < out; ++row)
      for (std::int64_t t = 0; t < k; ++t)
        b[static_cast<std::size_t>(row * k + t)] *= r.S[static_cast<std::size_t>(t)];
  std::vector<float> d = matmul(b, r.A, out, k, in);
  const float s = static_cast<float>(r.scaling);
  if (s != 1.0f)
    for (float& x : d)
      x *= s;
  return d;
}

}  // namespace ckpt
