// VeLoRA projection vectors: exact cases, padding, a brute-force cross-check of the streaming
// fidelity formulas, and the top-singular ≥ batch-average property over many seeds.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "ckptkit/analysis/velora.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"

using namespace ckpt;
using velora::Init;

namespace {

const std::vector<Init> kBoth = {Init::BatchAverage, Init::TopSingular};

std::vector<double> random_matrix(std::int64_t tokens, std::int64_t dim, std::uint64_t seed,
                                  double offset) {
  Rng rng(seed, "velora-test");
  std::vector<double> x(static_cast<std::size_t>(tokens * dim));
  // A per-column offset gives the data a mean direction, as real activations have.
  std::vector<double> mu(static_cast<std::size_t>(dim));
  for (auto& m : mu)
    m = offset * rng.normal();
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < dim; ++j)
      x[t * dim + j] = mu[j] + rng.normal() * (1.0 + 0.3 * (j % 3));
  return x;
}

const velora::Projection& get(const velora::Analysis& a, std::int64_t m, Init init) {
  for (const auto& p : a.projections)
    if (p.groups == m && p.init == init) return p;
  FAIL("projection missing");
  return a.projections.front();
}

/// Independent brute force: builds the padded sub-tokens and X̂ explicitly (as PEFT's
/// _reshape_to_grouped_subtokens / _reconstruct_activations do) and measures everything directly.
velora::Fidelity brute_force(const std::vector<double>& x, std::int64_t tokens, std::int64_t d,
                             std::int64_t m, const std::vector<double>& v) {
  const std::int64_t g = (d + m - 1) / m;
  std::vector<double> xhat(x.size(), 0.0);
  double kept = 0, total = 0;
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t k = 0; k < m; ++k) {
      std::vector<double> s(static_cast<std::size_t>(g), 0.0);
      for (std::int64_t j = 0; j < g; ++j)
        if (k * g + j < d) s[j] = x[t * d + k * g + j];
      double z = 0, n2 = 0;
      for (std::int64_t j = 0; j < g; ++j) {
        z += s[j] * v[j];
        n2 += s[j] * s[j];
      }
      kept += z * z;
      total += n2;
      for (std::int64_t j = 0; j < g; ++j)
        if (k * g + j < d) xhat[t * d + k * g + j] = z * v[j];
    }
  double gram2 = 0, diff2 = 0, xerr2 = 0;
  for (std::int64_t a = 0; a < d; ++a)
    for (std::int64_t b = 0; b < d; ++b) {
      double full = 0, hat = 0;
      for (std::int64_t t = 0; t < tokens; ++t) {
        full += x[t * d + a] * x[t * d + b];
        hat += xhat[t * d + a] * xhat[t * d + b];
      }
      gram2 += full * full;
      diff2 += (hat - full) * (hat - full);
    }
  for (std::size_t i = 0; i < x.size(); ++i)
    xerr2 += (x[i] - xhat[i]) * (x[i] - xhat[i]);
  return {kept / total, std::sqrt(diff2 / gram2), std::sqrt(xerr2 / total)};
}

}  // namespace

TEST_CASE("velora: all sub-tokens parallel to one vector -> energy 1 and v = ±u", "[velora]") {
  const std::int64_t tokens = 37, m = 6, g = 5, d = m * g;
  Rng rng(7, "parallel");
  std::vector<double> u(g);
  double n = 0;
  for (auto& e : u) {
    e = rng.normal();
    n += e * e;
  }
  for (auto& e : u)
    e /= std::sqrt(n);
  std::vector<double> x(static_cast<std::size_t>(tokens * d));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t k = 0; k < m; ++k) {
      const double c = 0.5 + std::abs(rng.normal());  // positive: the mean is a multiple of u
      for (std::int64_t j = 0; j < g; ++j)
        x[t * d + k * g + j] = c * u[j];
    }
  const std::int64_t groups[] = {m};
  const auto a = velora::analyze(velora::matrix_source(x, d, 8), groups, kBoth);
  for (Init init : kBoth) {
    const auto& p = get(a, m, init);
    double dot = 0;
    for (std::int64_t j = 0; j < g; ++j)
      dot += p.v[j] * u[j];
    INFO(velora::init_name(init) << ": energy " << p.fidelity.energy_kept << ", |<v,u>| "
                                 << std::abs(dot) << ", grad err " << p.fidelity.grad_rel_err);
    const double kTol = 1e-12;
    CHECK(std::abs(p.fidelity.energy_kept - 1.0) < kTol);
    CHECK(std::abs(std::abs(dot) - 1.0) < kTol);
    CHECK(dot > 0);  // sign rule: v points along the mean sub-token, which is +c·u
    CHECK(p.fidelity.grad_rel_err < 1e-6);  // sqrt of an f64 cancellation: ~1e-8 floor
    CHECK(p.fidelity.x_rel_err < 1e-6);
  }
}

TEST_CASE("velora: M = D gives sub-token size 1 and keeps everything", "[velora]") {
  const std::int64_t tokens = 20, d = 9;
  const auto x = random_matrix(tokens, d, 3, 0.5);
  const std::int64_t groups[] = {d};
  const auto a = velora::analyze(velora::matrix_source(x, d), groups, kBoth);
  for (Init init : kBoth) {
    const auto& p = get(a, d, init);
    INFO(velora::init_name(init) << ": group_dim " << p.group_dim << ", energy "
                                 << p.fidelity.energy_kept);
    CHECK(p.group_dim == 1);
    REQUIRE(p.v.size() == 1);
    CHECK(std::abs(std::abs(p.v[0]) - 1.0) < 1e-15);
    CHECK(std::abs(p.fidelity.energy_kept - 1.0) < 1e-12);
    CHECK(p.fidelity.grad_rel_err < 1e-6);
  }
}

TEST_CASE("velora: padding when D % M != 0 follows PEFT's zero-padded grouping", "[velora]") {
  CHECK(velora::group_dim(5, 3) == 2);
  CHECK(velora::group_dim(16, 7) == 3);  // PEFT's test_velora_supports_non_divisible_groups
  CHECK(velora::group_dim(1536, 1536) == 1);
  CHECK(velora::group_dim(11008, 32) == 344);
  // x = arange(10).reshape(2, 5), M = 3: sub-tokens [0,1] [2,3] [4,0] [5,6] [7,8] [9,0]
  // (PEFT's test_velora_grouping_pads_remainder_features), so their sum is [27, 18].
  std::vector<double> x(10);
  for (int i = 0; i < 10; ++i)
    x[i] = i;
  const std::int64_t groups[] = {3};
  const auto a = velora::analyze(velora::matrix_source(x, 5), groups, kBoth);
  const auto& ba = get(a, 3, Init::BatchAverage);
  REQUIRE(ba.v.size() == 2);
  const double n = std::sqrt(27.0 * 27.0 + 18.0 * 18.0);
  CHECK(std::abs(ba.v[0] - 27.0 / n) < 1e-15);
  CHECK(std::abs(ba.v[1] - 18.0 / n) < 1e-15);
  // The streaming formulas (with the padding weights w_m) agree with an explicit X̂.
  for (Init init : kBoth) {
    const auto& p = get(a, 3, init);
    const auto bf = brute_force(x, 2, 5, 3, p.v);
    INFO(velora::init_name(init) << ": energy " << p.fidelity.energy_kept << " vs "
                                 << bf.energy_kept << ", grad " << p.fidelity.grad_rel_err << " vs "
                                 << bf.grad_rel_err << ", x " << p.fidelity.x_rel_err << " vs "
                                 << bf.x_rel_err);
    CHECK(std::abs(p.fidelity.energy_kept - bf.energy_kept) < 1e-12);
    CHECK(std::abs(p.fidelity.grad_rel_err - bf.grad_rel_err) < 1e-7);
    CHECK(std::abs(p.fidelity.x_rel_err - bf.x_rel_err) < 1e-7);
  }
}

TEST_CASE(
    "velora: top-singular keeps at least the batch-average energy, formulas match brute force",
    "[velora][property]") {
  int checked = 0;
  double worst_gap = 1.0;
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    Rng pick(seed, "shape");
    const std::int64_t tokens = 3 + static_cast<std::int64_t>(pick.uniform() * 30);
    const std::int64_t d = 2 + static_cast<std::int64_t>(pick.uniform() * 20);
    const std::int64_t m = 1 + static_cast<std::int64_t>(pick.uniform() * d);
    const double offset = pick.uniform() < 0.3 ? 0.0 : 2.0 * pick.uniform();
    const auto x = random_matrix(tokens, d, seed, offset);
    const std::int64_t groups[] = {m};
    const auto a = velora::analyze(
        velora::matrix_source(x, d, 1 + static_cast<std::int64_t>(seed % 7)), groups, kBoth);
    const auto& ba = get(a, m, Init::BatchAverage);
    const auto& ts = get(a, m, Init::TopSingular);
    INFO("seed " << seed << " tokens " << tokens << " D " << d << " M " << m << ": BA "
                 << ba.fidelity.energy_kept << " TS " << ts.fidelity.energy_kept);
    REQUIRE(ts.fidelity.energy_kept >= ba.fidelity.energy_kept - 1e-12);
    REQUIRE(ba.fidelity.energy_kept >= -1e-15);
    REQUIRE(ts.fidelity.energy_kept <= 1 + 1e-12);
    worst_gap = std::min(worst_gap, ts.fidelity.energy_kept - ba.fidelity.energy_kept);
    for (const auto* p : {&ba, &ts}) {
      double n2 = 0;
      for (double e : p->v)
        n2 += e * e;
      REQUIRE(std::abs(n2 - 1.0) < 1e-12);
      const auto bf = brute_force(x, tokens, d, m, p->v);
      INFO(velora::init_name(p->init)
           << " grad " << p->fidelity.grad_rel_err << " vs brute force " << bf.grad_rel_err
           << ", x " << p->fidelity.x_rel_err << " vs " << bf.x_rel_err);
      REQUIRE(std::abs(p->fidelity.energy_kept - bf.energy_kept) < 1e-10);
      REQUIRE(std::abs(p->fidelity.grad_rel_err - bf.grad_rel_err) < 1e-6);
      REQUIRE(std::abs(p->fidelity.x_rel_err - bf.x_rel_err) < 1e-6);
    }
    ++checked;
  }
  INFO("smallest TS - BA energy gap over the seeds: " << worst_gap);
  CHECK(checked == 150);
}

TEST_CASE("velora: results do not depend on the block size of the stream", "[velora]") {
  const std::int64_t tokens = 50, d = 12;
  const auto x = random_matrix(tokens, d, 11, 1.0);
  const std::int64_t groups[] = {1, 4, 5, 12};
  const auto a = velora::analyze(velora::matrix_source(x, d, 1), groups, kBoth);
  const auto b = velora::analyze(velora::matrix_source(x, d, 1000), groups, kBoth);
  REQUIRE(a.projections.size() == b.projections.size());
  for (std::size_t i = 0; i < a.projections.size(); ++i) {
    const auto& p = a.projections[i];
    const auto& q = b.projections[i];
    INFO("M " << p.groups << " " << velora::init_name(p.init));
    CHECK(std::abs(p.fidelity.energy_kept - q.fidelity.energy_kept) < 1e-12);
    for (std::size_t j = 0; j < p.v.size(); ++j)
      CHECK(std::abs(p.v[j] - q.v[j]) < 1e-10);
  }
  CHECK(a.tokens == tokens);
}

TEST_CASE("velora: bad group counts and empty input are rejected", "[velora]") {
  const auto x = random_matrix(4, 6, 1, 0.0);
  for (std::int64_t bad : {0, -1, 7}) {
    const std::int64_t groups[] = {bad};
    try {
      (void)velora::analyze(velora::matrix_source(x, 6), groups, kBoth);
      FAIL("M = " << bad << " was accepted for D = 6");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Usage);
    }
  }
  const std::vector<double> none;
  const std::int64_t groups[] = {2};
  CHECK_THROWS_AS(velora::analyze(velora::matrix_source(none, 6), groups, kBoth), Error);
}

TEST_CASE("velora: memory estimate arithmetic", "[velora]") {
  // v_proj of Llama-7B, M = 32, batch 8 × 2048, fp16 input and fp16 z.
  const auto v = velora::memory_estimate(4096, 32, 8, 2048, 2, 2);
  CHECK(v.full_bytes == 8ull * 2048 * 4096 * 2);  // 128 MiB
  CHECK(v.full_bytes == 128ull << 20);
  CHECK(v.compressed_bytes == 8ull * 2048 * 32 * 2);  // 1 MiB
  CHECK(v.saved_bytes == v.full_bytes - v.compressed_bytes);
  CHECK(v.ratio == Approx(128.0).epsilon(1e-15));
  const auto down = velora::memory_estimate(11008, 32, 8, 2048, 2, 2);
  CHECK(down.ratio == Approx(344.0).epsilon(1e-15));
  CHECK(down.full_bytes == 8ull * 2048 * 11008 * 2);
  // f32 inputs with fp16 z double the ratio.
  CHECK(velora::memory_estimate(4096, 32, 1, 1, 4, 2).ratio == Approx(256.0));
  CHECK_THROWS_AS(velora::memory_estimate(4096, 0, 8, 2048, 2, 2), Error);
}

TEST_CASE("velora: sweep group counts and init names", "[velora]") {
  const auto s = velora::sweep_groups(384, 24);
  const std::vector<std::int64_t> want = {1, 2, 4, 8, 16, 24, 32, 64, 128, 256, 384};
  CHECK(s == want);
  CHECK(velora::sweep_groups(4) == std::vector<std::int64_t>{1, 2, 4});
  CHECK(velora::parse_init("batch-average") == Init::BatchAverage);
  CHECK(velora::parse_init("batch_average_once") == Init::BatchAverage);
  CHECK(velora::parse_init("top-singular") == Init::TopSingular);
  CHECK_FALSE(velora::parse_init("svd"));
}

TEST_CASE("velora: top-singular on wide sub-tokens (inverse-iteration path) is the best direction",
          "[velora][property]") {
  // g > 32 takes the eigenvalues-only + inverse-iteration path; check it against power iteration on
  // an explicit sub-token Gram and against random directions.
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    const std::int64_t tokens = 120, d = 100;
    const double offset = seed % 2 ? 1.0 : 0.0;  // with and without a dominant mean direction
    const auto x = random_matrix(tokens, d, 100 + seed, offset);
    for (std::int64_t m : {1, 2, 3}) {
      const std::int64_t g = (d + m - 1) / m;
      const std::int64_t groups[] = {m};
      const auto a = velora::analyze(velora::matrix_source(x, d), groups, kBoth);
      const auto& ts = get(a, m, Init::TopSingular);
      const auto& ba = get(a, m, Init::BatchAverage);
      // Explicit padded sub-token Gram.
      std::vector<double> gram(static_cast<std::size_t>(g * g), 0.0);
      double total = 0;
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t k = 0; k < m; ++k) {
          std::vector<double> s(static_cast<std::size_t>(g), 0.0);
          for (std::int64_t j = 0; j < g; ++j)
            if (k * g + j < d) s[j] = x[t * d + k * g + j];
          for (std::int64_t i = 0; i < g; ++i) {
            total += s[i] * s[i];
            for (std::int64_t j = 0; j < g; ++j)
              gram[i * g + j] += s[i] * s[j];
          }
        }
      auto quotient = [&](const std::vector<double>& v) {
        double num = 0, den = 0;
        for (std::int64_t i = 0; i < g; ++i) {
          den += v[i] * v[i];
          for (std::int64_t j = 0; j < g; ++j)
            num += v[i] * gram[i * g + j] * v[j];
        }
        return num / den / total;
      };
      std::vector<double> p(static_cast<std::size_t>(g), 1.0);
      for (int it = 0; it < 3000; ++it) {
        std::vector<double> q(static_cast<std::size_t>(g), 0.0);
        double n = 0;
        for (std::int64_t i = 0; i < g; ++i) {
          for (std::int64_t j = 0; j < g; ++j)
            q[i] += gram[i * g + j] * p[j];
          n += q[i] * q[i];
        }
        for (auto& e : q)
          e /= std::sqrt(n);
        p = q;
      }
      const double power = quotient(p);
      INFO("seed " << seed << " M " << m << " g " << g << ": TS " << ts.fidelity.energy_kept
                   << " power " << power << " BA " << ba.fidelity.energy_kept);
      CHECK(std::abs(quotient(ts.v) - ts.fidelity.energy_kept) < 1e-10);
      CHECK(ts.fidelity.energy_kept >= power - 1e-9);  // power iteration can only be below λ_max
      CHECK(ts.fidelity.energy_kept >= ba.fidelity.energy_kept - 1e-12);
      Rng rng(seed * 31 + static_cast<std::uint64_t>(m), "random-directions");
      for (int r = 0; r < 30; ++r) {
        std::vector<double> v(static_cast<std::size_t>(g));
        for (auto& e : v)
          e = rng.normal();
        REQUIRE(ts.fidelity.energy_kept >= quotient(v) - 1e-12);
      }
    }
  }
}
