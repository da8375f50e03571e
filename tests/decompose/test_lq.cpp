// LQ-LoRA's alternating loop on one matrix: the kept iterate is the best, r = 0 is plain
// quantization, the adapter scaling folds back exactly, weights steer the error, determinism.
#include <catch2/catch.hpp>
#include <cmath>

#include "ckptkit/core/error.hpp"
#include "ckptkit/decompose/lq.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

/// Gaussian bulk plus a few strong rank-1 spikes, like trained weights' outliers.
std::vector<float> spiky(std::int64_t m, std::int64_t n, std::uint64_t seed) {
  auto w = test::gaussian(static_cast<std::size_t>(m * n), seed, 0.02f);
  for (int s = 0; s < 8; ++s) {
    const auto u = test::gaussian(static_cast<std::size_t>(m), seed + 10 + s);
    const auto v = test::gaussian(static_cast<std::size_t>(n), seed + 20 + s);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        w[i * n + j] += (1.0f / (s + 1)) * u[i] * v[j] / std::sqrt(float(m));
  }
  return w;
}

quant::QuantSpec nf(int bits, int block = 64) {
  quant::QuantSpec s;
  s.scheme = {quant::Family::NF, bits};
  s.block = block;
  s.dq = quant::DoubleQuant::Lq;
  return s;
}

/// ‖W − deq(Q) − L1·L2‖_F recomputed from the returned factors.
double recon_error(const std::vector<float>& w, const LqResult& r, std::int64_t m, std::int64_t n) {
  std::vector<float> q(w.size());
  quant::dequantize(r.q, q);
  const auto l = lq_lowrank(r, m, n);
  double s = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double e = double(w[i]) - q[i] - l[i];
    s += e * e;
  }
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("lq: the kept iterate is the best one and matches its factors", "[lq]") {
  const std::int64_t m = 96, n = 128;
  const auto w = spiky(m, n, 1);
  for (LqOrder order : {LqOrder::SvdFirst, LqOrder::QuantizeFirst}) {
    LqParams p;
    p.rank = 8;
    p.max_iter = 8;
    p.order = order;
    p.spec = nf(3);
    const LqResult r = lq_decompose_matrix(w, m, n, p, nullptr, "w");
    INFO("order " << lq_order_name(order) << ", iterations " << r.errors.size());
    REQUIRE(!r.errors.empty());
    for (double e : r.errors)
      CHECK(r.error <= e);  // never worse than any iterate seen
    CHECK(r.error == r.errors[static_cast<std::size_t>(r.best_iter - 1)]);
    // The error before the kept iterate decreased at every step (the loop stops when it rises).
    for (int t = 1; t < r.best_iter; ++t)
      CHECK(r.errors[static_cast<std::size_t>(t)] < r.errors[static_cast<std::size_t>(t - 1)]);
    const double again = recon_error(w, r, m, n);
    constexpr double kTol = 1e-4;  // f32 products vs the f64 sum
    CHECK(std::fabs(again - r.error) <= kTol * r.error);
    // Low rank + quantization beats quantization alone at the same config.
    const double plain = lq_plain_error(w, m, n, p.spec, nullptr);
    INFO("lq " << r.error << " plain " << plain);
    CHECK(r.error < plain);
  }
}

TEST_CASE("lq: rank 0 equals plain quantization", "[lq]") {
  const std::int64_t m = 64, n = 80;
  const auto w = spiky(m, n, 2);
  LqParams p;
  p.rank = 0;
  p.spec = nf(4);
  const LqResult r = lq_decompose_matrix(w, m, n, p, nullptr, "w");
  const quant::QuantizedTensor q = quant::quantize(w, p.spec);
  CHECK(r.errors.size() == 1);
  CHECK(r.q.packed == q.packed);
  CHECK(r.q.scale_codes == q.scale_codes);
  CHECK(r.error == lq_plain_error(w, m, n, p.spec, nullptr));
  CHECK(r.L1.empty());
}

TEST_CASE("lq: adapter factors fold the LoRA scaling (s·B·A = L1·L2)", "[lq]") {
  const std::int64_t m = 48, n = 64;
  const auto w = spiky(m, n, 3);
  LqParams p;
  p.rank = 4;
  p.max_iter = 3;
  p.spec = nf(4);
  const LqResult r = lq_decompose_matrix(w, m, n, p, nullptr, "w");
  const auto l = lq_lowrank(r, m, n);
  for (double s : {0.25, 1.0, 2.0}) {
    const LqAdapterFactors f = lq_adapter_factors(r, s);
    REQUIRE(f.A.size() == static_cast<std::size_t>(p.rank * n));
    REQUIRE(f.B.size() == static_cast<std::size_t>(m * p.rank));
    double num = 0, den = 0;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double d = 0;
        for (int k = 0; k < p.rank; ++k)
          d += double(f.B[i * p.rank + k]) * f.A[k * n + j];
        const double e = s * d - l[i * n + j];
        num += e * e;
        den += double(l[i * n + j]) * l[i * n + j];
      }
    constexpr double kTol = 1e-6;  // f32 rounding of 1/√s
    INFO("s = " << s << ", rel diff " << std::sqrt(num / den));
    CHECK(std::sqrt(num / den) < kTol);
  }
}

TEST_CASE("lq: deterministic for a (seed, name) and any parallel split", "[lq]") {
  const std::int64_t m = 200, n = 96;
  const auto w = spiky(m, n, 4);
  LqParams p;
  p.rank = 6;
  p.max_iter = 4;
  p.spec = nf(3, 32);
  p.seed = 7;
  const LqResult a = lq_decompose_matrix(w, m, n, p, nullptr, "layer.0");
  p.parallel = [](std::size_t count, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body) {
    for (std::size_t b = count; b > 0;) {  // reversed chunks: order must not matter
      const std::size_t lo = b > grain ? b - grain : 0;
      body(lo, b);
      b = lo;
    }
  };
  const LqResult b = lq_decompose_matrix(w, m, n, p, nullptr, "layer.0");
  CHECK(a.q.packed == b.q.packed);
  CHECK(a.L1 == b.L1);
  CHECK(a.L2 == b.L2);
  CHECK(a.errors == b.errors);
}

TEST_CASE("lq: Fisher weights lower the weighted error where they are large", "[lq]") {
  const std::int64_t m = 64, n = 96;
  const auto w = spiky(m, n, 5);
  LqWeights fw;
  fw.fisher.assign(static_cast<std::size_t>(m * n), 1.0f);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < 8; ++j)
      fw.fisher[static_cast<std::size_t>(i * n + j)] = 400.0f;  // 8 important columns
  LqParams p;
  p.rank = 8;
  p.max_iter = 4;
  p.spec = nf(2);
  const LqResult plainsvd = lq_decompose_matrix(w, m, n, p, nullptr, "w");
  const LqResult weighted = lq_decompose_matrix(w, m, n, p, &fw, "w");
  // Both measured in the Fisher norm: the weighted SVD must not be worse there.
  std::vector<float> q(w.size());
  quant::dequantize(plainsvd.q, q);
  const auto l = lq_lowrank(plainsvd, m, n);
  std::vector<float> e(w.size());
  for (std::size_t i = 0; i < w.size(); ++i)
    e[i] = w[i] - q[i] - l[i];
  const double unweighted_in_fisher = std::sqrt(lq_weighted_sq(e, &fw, m, n));
  INFO("weighted " << weighted.error << " vs unweighted-SVD " << unweighted_in_fisher);
  CHECK(weighted.error < unweighted_in_fisher);
  // Separable scalings: √ of the row / column means.
  const LqScaling sc = lq_scaling(fw, m, n);
  CHECK(sc.col[0] == Approx(std::sqrt((400.0 * m) / m)).epsilon(1e-6));
  CHECK(sc.col[20] == Approx(1.0).epsilon(1e-6));
  CHECK(sc.row[3] == Approx(std::sqrt((400.0 * 8 + (n - 8)) / n)).epsilon(1e-6));
}

TEST_CASE("lq: bad ranks are usage errors", "[lq]") {
  const auto w = spiky(16, 16, 6);
  LqParams p;
  p.rank = 16;
  p.spec = nf(4, 16);
  CHECK_THROWS_AS(lq_decompose_matrix(w, 16, 16, p, nullptr, "w"), Error);
  p.rank = -1;
  CHECK_THROWS_AS(lq_decompose_matrix(w, 16, 16, p, nullptr, "w"), Error);
}
