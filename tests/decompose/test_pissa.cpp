// PiSSA / MiLoRA / SORSA / extraction factors of one matrix: PEFT's formulas, the residual
// identity, and the randomized path on the sample's real weights.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "ckptkit/core/error.hpp"
#include "ckptkit/decompose/pissa.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

std::vector<float> spiky(std::int64_t m, std::int64_t n, std::uint64_t seed) {
  // Gaussian bulk plus a few strong rank-1 spikes: a clear top of the spectrum.
  auto w = test::gaussian(static_cast<std::size_t>(m * n), seed, 0.05f);
  for (int s = 0; s < 6; ++s) {
    const auto u = test::gaussian(static_cast<std::size_t>(m), seed + 10 + s);
    const auto v = test::gaussian(static_cast<std::size_t>(n), seed + 20 + s);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        w[i * n + j] += (0.5f / (s + 1)) * u[i] * v[j] / std::sqrt(float(m));
  }
  return w;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Rows of a (k×n): Gram matrix a·aᵀ.
double gram(const std::vector<float>& a, std::int64_t n, std::int64_t i, std::int64_t j) {
  double s = 0;
  for (std::int64_t c = 0; c < n; ++c)
    s += static_cast<double>(a[i * n + c]) * a[j * n + c];
  return s;
}

}  // namespace

TEST_CASE("pissa: PEFT's factors and W_res + s·B·A = W", "[decompose][pissa]") {
  const std::int64_t m = 90, n = 60;
  const auto w = spiky(m, n, 3);
  const auto sv = exact_singular_values(w, m, n);
  for (bool rslora : {false, true}) {
    SvdInitParams p;
    p.rank = 8;
    p.alpha = 16;
    p.rslora = rslora;
    const auto r = svd_init_matrix(w, m, n, p, "w");
    const double s = rslora ? 16 / std::sqrt(8.0) : 2.0;
    CHECK(r.scaling == Approx(s));
    // A·Aᵀ = diag(S_r / s) (√ split, S divided by the scaling, peft-anchors §1.2)
    for (int i = 0; i < 8; ++i) {
      CHECK(gram(r.A, n, i, i) == Approx(sv[i] / s).epsilon(1e-4));
      if (i > 0) CHECK(std::fabs(gram(r.A, n, i, i - 1)) < 1e-4 * sv[0]);
    }
    // s·B·A is the best rank-8 approximation: ‖W − s·BA‖² = Σ_{i>8} σ²
    const auto d = adapter_delta(r, m, n);
    std::vector<float> res(w.size());
    for (std::size_t i = 0; i < w.size(); ++i)
      res[i] = w[i] - d[i];
    double tail = 0;
    for (std::size_t i = 8; i < sv.size(); ++i)
      tail += double(sv[i]) * sv[i];
    double err = 0;
    for (float x : res)
      err += double(x) * x;
    CHECK(err == Approx(tail).epsilon(1e-4));
    // f32 residual identity: (W − s·BA) + s·BA = W to 1e-5 relative
    std::vector<float> back(w.size());
    for (std::size_t i = 0; i < w.size(); ++i)
      back[i] = res[i] + d[i];
    const double rd = rel_diff(back, w);
    INFO("‖(W_res + s·BA) − W‖ / ‖W‖ = " << rd);
    CHECK(rd <= 1e-5);
    CHECK(r.optimal_rel_err);
    CHECK(*r.optimal_rel_err == Approx(std::sqrt(tail / r.norm_sq)).epsilon(1e-4));
    CHECK(r.sigma_1 == Approx(sv[0]));
    CHECK(*r.sigma_r1 == Approx(sv[8]));
  }
}

TEST_CASE("milora takes the smallest triplets, sorsa keeps U, S, Vᵀ apart", "[decompose]") {
  const std::int64_t m = 50, n = 40;
  const auto w = spiky(m, n, 5);
  const auto sv = exact_singular_values(w, m, n);
  SvdInitParams p;
  p.rank = 4;
  p.method = SvdInitMethod::Milora;
  const auto mi = svd_init_matrix(w, m, n, p, "w");
  for (int i = 0; i < 4; ++i)
    CHECK(gram(mi.A, n, i, i) == Approx(sv[36 + i]).epsilon(1e-3));
  double small = 0;
  for (int i = 36; i < 40; ++i)
    small += double(sv[i]) * sv[i];
  CHECK(mi.captured_sq == Approx(small).epsilon(1e-5));

  p.method = SvdInitMethod::Sorsa;
  p.alpha.reset();  // alpha = r: s = 1 (SORSA's default)
  const auto so = svd_init_matrix(w, m, n, p, "w");
  REQUIRE(so.S.size() == 4);
  CHECK(so.scaling == 1.0);
  for (int i = 0; i < 4; ++i) {
    CHECK(so.S[i] == Approx(sv[i]));
    CHECK(gram(so.A, n, i, i) == Approx(1.0).epsilon(1e-5));  // sorsa_A = V_pᵀ: orthonormal rows
  }
  const auto d = adapter_delta(so, m, n);
  std::vector<float> res(w.size());
  double err = 0, tail = 0;
  for (std::size_t i = 0; i < w.size(); ++i)
    err += double(w[i] - d[i]) * (w[i] - d[i]);
  for (std::size_t i = 4; i < sv.size(); ++i)
    tail += double(sv[i]) * sv[i];
  CHECK(err == Approx(tail).epsilon(1e-4));
}

TEST_CASE("energy picks the smallest sufficient rank, bad ranks are usage errors",
          "[decompose][energy]") {
  const std::int64_t m = 64, n = 48;
  const auto w = spiky(m, n, 9);
  const auto sv = exact_singular_values(w, m, n);
  double total = 0;
  for (float x : sv)
    total += double(x) * x;
  SvdInitParams p;
  p.energy = 0.9;
  p.method = SvdInitMethod::Extract;
  const auto r = svd_init_matrix(w, m, n, p, "w");
  double acc = 0;
  for (int i = 0; i < r.rank; ++i)
    acc += double(sv[i]) * sv[i];
  double prev = acc - double(sv[r.rank - 1]) * sv[r.rank - 1];
  INFO("k = " << r.rank << ", captured " << acc / total);
  CHECK(acc >= 0.9 * total * (1 - 1e-6));
  CHECK(prev < 0.9 * total);
  CHECK(r.alpha == r.rank);
  CHECK(r.captured_sq / r.norm_sq == Approx(acc / total).epsilon(1e-4));

  SvdInitParams bad;
  bad.rank = 48;
  CHECK_THROWS_AS(svd_init_matrix(w, m, n, bad, "w"), ckpt::Error);
  bad.rank = 0;
  CHECK_THROWS_AS(svd_init_matrix(w, m, n, bad, "w"), ckpt::Error);
  bad.rank = 4;
  bad.method = SvdInitMethod::Milora;
  bad.algorithm = SvdAlgorithm::Randomized;
  CHECK_THROWS_AS(svd_init_matrix(w, m, n, bad, "w"), ckpt::Error);
}

TEST_CASE("randomized pissa is within 1% of the optimum on the sample's real weights",
          "[decompose][rsvd]") {
  const auto ckpt = Checkpoint::open(test::data_dir() / "bytegpt-base-bf16");
  int checked = 0;
  for (const char* name :
       {"model.decoder.layers.0.self_attn.q_proj.weight", "model.decoder.layers.2.fc1.weight",
        "model.decoder.layers.5.fc2.weight", "model.decoder.layers.3.self_attn.out_proj.weight"}) {
    const auto* t = ckpt.find(name);
    REQUIRE(t != nullptr);
    const auto w = to_f32(ckpt.view(*t));
    const std::int64_t m = t->info.shape[0], n = t->info.shape[1];
    SvdInitParams p;  // defaults: rank 16, P = 10, N = 4
    p.algorithm = SvdAlgorithm::Randomized;
    const auto r = svd_init_matrix(w, m, n, p, name);
    const auto d = adapter_delta(r, m, n);
    double err = 0;
    for (std::size_t i = 0; i < w.size(); ++i)
      err += double(w[i] - d[i]) * (w[i] - d[i]);
    const auto sv = exact_singular_values(w, m, n);
    double opt = 0;
    for (std::size_t i = 16; i < sv.size(); ++i)
      opt += double(sv[i]) * sv[i];
    const double ratio = std::sqrt(err / opt);
    INFO(name << ": ‖W − W_r‖_F / optimum = " << ratio << ", posterior " << *r.posterior_rel_err);
    CHECK(ratio <= 1.01);
    CHECK(r.posterior_rel_err);
    ++checked;
  }
  CHECK(checked == 4);
}

namespace {

/// The cast error statistics computed the plain way, entry by entry, from the scalar conversions.
struct RefStats {
  std::vector<std::byte> out;
  double err_sq = 0, max_abs = 0, max_ulps = 0, max_res_ulps = 0;
  std::uint64_t within = 0;
};

double ulp_bf16(float x) {
  int e = 0;
  std::frexp(x, &e);  // x = f·2^e, f in [0.5, 1): exponent of x is e − 1
  return std::ldexp(1.0, std::max(e - 1, -126) - 7);
}

RefStats reference_residual(const std::vector<float>& res_math, const std::vector<float>& w_stored,
                            std::int64_t out, std::int64_t in, bool transposed) {
  RefStats r;
  r.out.resize(res_math.size() * 2);
  const std::int64_t rows = transposed ? in : out, cols = transposed ? out : in;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t j = static_cast<std::size_t>(i * cols + c);
      const float x = res_math[transposed ? static_cast<std::size_t>(c * in + i) : j];
      const std::uint16_t h = f32_to_bf16(x);
      std::memcpy(r.out.data() + 2 * j, &h, 2);
      const float stored = bf16_to_f32(h);
      const double e = std::fabs(static_cast<double>(stored) - x);
      r.err_sq += static_cast<double>(x) * x;
      r.max_abs = std::max(r.max_abs, e);
      const double u = e / ulp_bf16(w_stored[j]);
      r.max_ulps = std::max(r.max_ulps, u);
      r.within += u <= 1.0 ? 1 : 0;
      r.max_res_ulps = std::max(r.max_res_ulps, e / ulp_bf16(stored));
    }
  return r;
}

}  // namespace

TEST_CASE("residual_in_place: fused cast and statistics equal the per-entry reference",
          "[decompose][residual]") {
  // 1100 rows: three fixed 512-row blocks, the last one partial; bf16 input and output.
  for (bool transposed : {false, true}) {
    const std::int64_t out = transposed ? 70 : 1100, in = transposed ? 1100 : 70;
    auto w = spiky(out, in, 11);
    std::vector<std::byte> stored_bytes(w.size() * 2);
    std::vector<float> w_stored(w.size());  // W as the checkpoint stores it (storage orientation)
    const std::int64_t rows = transposed ? in : out, cols = transposed ? out : in;
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::size_t j = static_cast<std::size_t>(i * cols + c);
        float& x = w[transposed ? static_cast<std::size_t>(c * in + i) : j];
        const std::uint16_t h = f32_to_bf16(x);
        x = bf16_to_f32(h);
        w_stored[j] = x;
        std::memcpy(stored_bytes.data() + 2 * j, &h, 2);
      }
    SvdInitParams p;
    p.rank = 6;
    p.algorithm = SvdAlgorithm::Randomized;
    const auto r = svd_init_matrix(w, out, in, p, "w");
    auto expected_res = w;
    subtract_adapter_delta(expected_res, r, out, in);
    const RefStats ref = reference_residual(expected_res, w_stored, out, in, transposed);

    auto serial = w;
    std::vector<std::byte> bytes1(w.size() * 2), bytes2(w.size() * 2);
    const auto s1 = residual_in_place(serial, r, out, in, transposed,
                                      {DType::BF16, stored_bytes, DType::BF16, bytes1});
    auto threaded = w;
    const auto s2 = residual_in_place(
        threaded, r, out, in, transposed, {DType::BF16, stored_bytes, DType::BF16, bytes2},
        [](std::size_t count, std::size_t, const std::function<void(std::size_t, std::size_t)>& b) {
          std::vector<std::thread> ts;
          for (std::size_t i = count; i-- > 0;)  // reverse order, one thread per block
            ts.emplace_back([&b, i] { b(i, i + 1); });
          for (auto& t : ts)
            t.join();
        });
    INFO((transposed ? "transposed" : "plain")
         << ": max_abs " << s1.max_abs << " vs " << ref.max_abs << ", max_ulps " << s1.max_ulps
         << " vs " << ref.max_ulps << ", within " << s1.within_one_ulp << " vs " << ref.within);
    CHECK(bytes1 == ref.out);
    CHECK(std::memcmp(serial.data(), expected_res.data(), w.size() * 4) == 0);
    CHECK(s1.err_sq == Approx(ref.err_sq).epsilon(1e-12));
    CHECK(s1.max_abs == ref.max_abs);
    CHECK(s1.max_ulps == ref.max_ulps);
    CHECK(s1.max_res_ulps == ref.max_res_ulps);
    CHECK(s1.within_one_ulp == ref.within);
    CHECK(s1.max_res_ulps <= 0.5);  // round to nearest: at most half an ulp of the stored value
    // Any split: the same bytes and the same statistics, bit for bit.
    CHECK(bytes2 == bytes1);
    CHECK(std::memcmp(&s1.err_sq, &s2.err_sq, sizeof(double)) == 0);
    CHECK(s2.max_ulps == s1.max_ulps);
    CHECK(s2.within_one_ulp == s1.within_one_ulp);

    // Without an output (extraction): Σ W_res² and max |W_res|.
    auto plain = w;
    const auto s3 = residual_in_place(plain, r, out, in, transposed, {});
    double mx = 0;
    for (float x : expected_res)
      mx = std::max(mx, static_cast<double>(std::fabs(x)));
    CHECK(s3.max_abs == mx);
    CHECK(s3.err_sq == Approx(ref.err_sq).epsilon(1e-12));
  }
}
