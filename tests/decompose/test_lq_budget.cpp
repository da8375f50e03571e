// Bit-budget allocation: Pareto fronts and hulls, exact bit accounting, the Lagrangian bound,
// optimality against brute force, and the budget respected exactly.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/decompose/lq_budget.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

using Items = std::vector<std::vector<KnapsackOption>>;

/// Random instance: per item, options with bits in [2, 9]·1000 and cost decreasing in bits
/// plus noise (so some options are dominated).
Items random_items(std::size_t n, std::size_t k, std::uint64_t seed) {
  Rng rng(seed, "mckp");
  Items items(n);
  for (auto& it : items) {
    const double scale = 0.5 + rng.uniform() * 4;
    for (std::size_t j = 0; j < k; ++j) {
      const std::uint64_t bits = 2000 + static_cast<std::uint64_t>(rng.uniform() * 7000);
      const double cost = scale * std::exp(-double(bits) / 1500.0) * (0.7 + 0.6 * rng.uniform());
      it.push_back({cost, bits});
    }
  }
  return items;
}

/// Exhaustive optimum (small instances only).
double brute_force(const Items& items, std::uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> c(items.size(), 0);
  while (true) {
    double cost = 0;
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
      cost += items[i][c[i]].cost;
      bits += items[i][c[i]].bits;
    }
    if (bits <= budget) best = std::min(best, cost);
    std::size_t i = 0;
    for (; i < items.size(); ++i) {
      if (++c[i] < items[i].size()) break;
      c[i] = 0;
    }
    if (i == items.size()) break;
  }
  return best;
}

}  // namespace

TEST_CASE("lq budget: Pareto front and lower hull", "[lq][budget]") {
  const std::vector<KnapsackOption> o = {{10, 100}, {6, 200}, {7, 250},  {5, 300},
                                         {1, 400},  {6, 200}, {0.9, 900}};
  const auto f = pareto_front(o);
  REQUIRE(f == std::vector<std::size_t>{0, 1, 3, 4, 6});  // {7,250} dominated, duplicate dropped
  const auto h = lower_hull(o);
  // (100,10) → (200,6): 0.04/bit; (200,6) → (300,5): 0.01; (300,5) → (400,1): 0.04 > 0.01, so
  // (300,5) is above the hull: hull 100 → 200 → 400 → 900.
  CHECK(h == std::vector<std::size_t>{0, 1, 4, 6});
}

TEST_CASE("lq budget: exact stored bits match the quantizer's own accounting", "[lq][budget]") {
  const auto x = test::gaussian(3 * 1000 + 17, 1);
  for (const auto& s : lq_candidate_specs("default")) {
    const auto q = quant::quantize(x, s);
    const double from_q = quant::stored_bits_per_param(q) * double(x.size());
    INFO(lq_config_label(s));
    CHECK(double(lq_stored_bits(s, std::int64_t(x.size()))) == Approx(from_q).epsilon(1e-12));
  }
  quant::QuantSpec bnb;
  bnb.dq = quant::DoubleQuant::Bnb;
  const auto q = quant::quantize(x, bnb);
  CHECK(double(lq_stored_bits(bnb, std::int64_t(x.size()))) ==
        Approx(quant::stored_bits_per_param(q) * double(x.size())).epsilon(1e-12));
  CHECK(lq_candidate_specs("default").size() == 48);
  CHECK(lq_candidate_specs("lq-lora").size() == 432);
  CHECK_THROWS_AS(lq_candidate_specs("nope"), Error);
}

TEST_CASE("lq budget: optimal on small instances (brute force), bound below the optimum",
          "[lq][budget]") {
  for (std::uint64_t seed = 1; seed <= 25; ++seed) {
    const Items items = random_items(5, 5, seed);
    std::uint64_t lo = 0, hi = 0;
    for (const auto& it : items) {
      std::uint64_t mn = ~0ull, mx = 0;
      for (const auto& o : it) {
        mn = std::min(mn, o.bits);
        mx = std::max(mx, o.bits);
      }
      lo += mn;
      hi += mx;
    }
    for (double frac : {0.1, 0.35, 0.6, 0.9}) {
      const auto budget = lo + static_cast<std::uint64_t>(frac * double(hi - lo));
      const KnapsackSolution s = solve_mckp(items, budget);
      const double opt = brute_force(items, budget);
      INFO("seed " << seed << " frac " << frac << ": solver " << s.cost << " brute " << opt
                   << " bound " << s.bound);
      CHECK(s.bits <= budget);
      CHECK(s.proven_optimal);
      constexpr double kRel = 1e-12;
      CHECK(s.cost <= opt * (1 + kRel));
      CHECK(s.bound <= opt * (1 + kRel));
      // The relaxation's value is the Lagrangian dual at the optimal multiplier.
      CHECK(lagrangian_dual(items, budget, s.lambda) == Approx(s.bound).epsilon(1e-9));
      // ... and the dual is below it elsewhere.
      CHECK(lagrangian_dual(items, budget, s.lambda * 1.5 + 1e-6) <= s.bound * (1 + 1e-9));
    }
  }
}

TEST_CASE("lq budget: the Lagrangian rounding alone stays within its bound", "[lq][budget]") {
  const Items items = random_items(40, 12, 99);
  std::uint64_t lo = 0;
  for (const auto& it : items) {
    std::uint64_t mn = ~0ull;
    for (const auto& o : it)
      mn = std::min(mn, o.bits);
    lo += mn;
  }
  const std::uint64_t budget = lo + 40 * 2500;
  const KnapsackSolution s = solve_mckp(items, budget, 0);  // no branch-and-bound
  CHECK(s.bits <= budget);
  CHECK(s.cost >= s.bound);
  INFO("gap " << s.gap() << " of " << s.cost);
  CHECK(s.gap() <= 0.05 * s.cost);  // one fractional item out of 40
  const KnapsackSolution full = solve_mckp(items, budget);
  CHECK(full.cost <= s.cost);
  CHECK(full.bits <= budget);
}

TEST_CASE("lq budget: beats or equals every uniform config that fits", "[lq][budget]") {
  const Items items = random_items(12, 8, 5);
  for (std::size_t j = 0; j < 8; ++j) {
    std::uint64_t b = 0;
    double c = 0;
    for (const auto& it : items) {
      b += it[j].bits;
      c += it[j].cost;
    }
    const KnapsackSolution s = solve_mckp(items, b);
    CHECK(s.bits <= b);
    CHECK(s.cost <= c);
  }
}

TEST_CASE("lq budget: a budget below the cheapest assignment is a usage error", "[lq][budget]") {
  const Items items = {{{1.0, 100}, {0.5, 200}}, {{2.0, 50}}};
  CHECK_THROWS_AS(solve_mckp(items, 149), Error);
  const KnapsackSolution s = solve_mckp(items, 150);
  CHECK(s.bits == 150);
  CHECK(s.choice == std::vector<std::size_t>{0, 0});
  const KnapsackSolution t = solve_mckp(items, 250);
  CHECK(t.choice == std::vector<std::size_t>{1, 0});
  CHECK(t.gap() == 0);
}
