#include "ckptkit/decompose/lq_budget.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

using quant::DoubleQuant;
using quant::QuantSpec;
using Items = std::vector<std::vector<KnapsackOption>>;

QuantSpec lq_spec(int bits, int block, int b0, int group, DType b1) {
  QuantSpec s;
  s.scheme = {quant::Family::NF, bits};
  s.block = block;
  s.dq = DoubleQuant::Lq;
  s.lq_bits = b0;
  s.lq_group = group;
  s.lq_scale_dtype = b1;
  return s;
}

/// One hull segment of one item: from hull point k to k + 1.
struct Segment {
  std::size_t item = 0, k = 0;
  double eff = 0;  // −Δcost / Δbits (> 0)
  std::uint64_t dw = 0;
  double dc = 0;  // Δcost (< 0)
};

/// Everything the relaxation needs, precomputed once.
struct Prepared {
  std::vector<std::vector<std::size_t>> front, hull;  // per item
  std::vector<Segment> segments;                      // all items, by decreasing efficiency
};

Prepared prepare(const Items& items) {
  Prepared p;
  for (std::size_t i = 0; i < items.size(); ++i) {
    p.front.push_back(pareto_front(items[i]));
    p.hull.push_back(lower_hull(items[i]));
    const auto& h = p.hull.back();
    for (std::size_t k = 0; k + 1 < h.size(); ++k) {
      const auto& a = items[i][h[k]];
      const auto& b = items[i][h[k + 1]];
      Segment s{i, k, 0, b.bits - a.bits, b.cost - a.cost};
      s.eff = -s.dc / static_cast<double>(s.dw);
      p.segments.push_back(s);
    }
  }
  // Along one hull the efficiencies strictly decrease, so this order respects every chain.
  std::stable_sort(p.segments.begin(), p.segments.end(), [](const Segment& a, const Segment& b) {
    if (a.eff != b.eff) return a.eff > b.eff;
    return a.item < b.item;
  });
  return p;
}

/// The LP relaxation over items ≥ `first` with `budget` bits: walk the segments greedily, the
/// first one that does not fit is taken fractionally. Returns the value; `lambda` the critical
/// efficiency, `pos` (when given) the integral hull positions reached before it.
double relaxation(const Items& items, const Prepared& p, std::size_t first, double budget,
                  double* lambda, std::vector<std::size_t>* pos) {
  double cost = 0, used = 0;
  for (std::size_t i = first; i < items.size(); ++i) {
    const auto& o = items[i][p.hull[i][0]];
    cost += o.cost;
    used += static_cast<double>(o.bits);
  }
  if (pos) pos->assign(items.size(), 0);
  if (lambda) *lambda = 0;
  double left = budget - used;
  if (left < 0) return std::numeric_limits<double>::infinity();
  for (const Segment& s : p.segments) {
    if (s.item < first) continue;
    if (static_cast<double>(s.dw) <= left) {
      left -= static_cast<double>(s.dw);
      cost += s.dc;
      if (pos) (*pos)[s.item] = s.k + 1;
    } else {
      if (lambda) *lambda = s.eff;
      return cost - s.eff * left;
    }
  }
  return cost;
}

/// Depth-first branch-and-bound over the Pareto fronts, pruned by the relaxation of the rest.
struct Search {
  const Items& items;
  const Prepared& p;
  std::uint64_t budget, limit, nodes = 0;
  std::vector<std::uint64_t> min_bits_suffix;
  std::vector<std::size_t> cur, best;
  double best_cost;
  bool aborted = false;

  void run(std::size_t d, double cost, std::uint64_t used) {
    if (aborted) return;
    if (++nodes > limit) {
      aborted = true;
      return;
    }
    if (d == items.size()) {
      if (cost < best_cost) {
        best_cost = cost;
        best = cur;
      }
      return;
    }
    const double rest =
        relaxation(items, p, d, static_cast<double>(budget - used), nullptr, nullptr);
    if (cost + rest >= best_cost * (1 - 1e-12)) return;
    // Cheapest-cost options first (the front is by increasing bits, decreasing cost).
    const auto& f = p.front[d];
    for (std::size_t k = f.size(); k-- > 0;) {
      const auto& o = items[d][f[k]];
      if (used + o.bits + min_bits_suffix[d + 1] > budget) continue;
      cur[d] = f[k];
      run(d + 1, cost + o.cost, used + o.bits);
      if (aborted) return;
    }
  }
};

}  // namespace

std::vector<QuantSpec> lq_candidate_specs(const std::string& set) {
  std::vector<QuantSpec> out;
  if (set == "default") {
    for (int bits : {2, 3, 4, 8})
      for (int block : {16, 32, 64})
        for (int b0 : {4, 8}) {
          out.push_back(lq_spec(bits, block, b0, 256, DType::F32));
          out.push_back(lq_spec(bits, block, b0, 64, DType::BF16));
        }
  } else if (set == "lq-lora") {
    for (int bits : {2, 3, 4, 8})
      for (int b0 : {2, 3, 4, 8})
        for (DType b1 : {DType::BF16, DType::F16, DType::F32})
          for (int block : {16, 32, 64})
            for (int group : {16, 64, 256})
              out.push_back(lq_spec(bits, block, b0, group, b1));
  } else {
    fail(ErrorKind::Usage, "--candidates: '" + set + "' is not default or lq-lora");
  }
  return out;
}

std::string lq_config_label(const QuantSpec& s) {
  std::string l = s.scheme.name() + "-b" + std::to_string(s.block);
  if (s.dq == DoubleQuant::Bnb) l += "-bnb";
  if (s.dq == DoubleQuant::Lq)
    l += "-lq" + std::to_string(s.lq_bits) + "x" + std::to_string(s.lq_group) + "-" +
         (s.lq_scale_dtype == DType::F32    ? "f32"
          : s.lq_scale_dtype == DType::BF16 ? "bf16"
                                            : "f16");
  return l;
}

std::uint64_t lq_stored_bits(const QuantSpec& s, std::int64_t numel) {
  const auto n = static_cast<std::uint64_t>(numel);
  const std::uint64_t nb = (n + s.block - 1) / s.block;
  const std::uint64_t levels = quant::scheme_levels(s.scheme).size();
  std::uint64_t bytes = (n * s.scheme.bits + 7) / 8 + 4 * levels;
  switch (s.dq) {
    case DoubleQuant::None:
      bytes += 4 * nb;
      break;
    case DoubleQuant::Bnb:
      bytes += nb + 4 * ((nb + s.nested_block - 1) / s.nested_block) + 4 * 256 + 4;
      break;
    case DoubleQuant::Lq:
      bytes += (nb * s.lq_bits + 7) / 8 +
               dtype_size(s.lq_scale_dtype) * ((nb + s.lq_group - 1) / s.lq_group) + 4;
      break;
  }
  return 8 * bytes;
}

std::vector<std::size_t> pareto_front(const std::vector<KnapsackOption>& opts) {
  std::vector<std::size_t> idx(opts.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    if (opts[a].bits != opts[b].bits) return opts[a].bits < opts[b].bits;
    return opts[a].cost < opts[b].cost;
  });
  std::vector<std::size_t> f;
  for (std::size_t i : idx)
    if (f.empty() || opts[i].cost < opts[f.back()].cost) {
      if (!f.empty() && opts[f.back()].bits == opts[i].bits) continue;  // same bits, kept the best
      f.push_back(i);
    }
  return f;
}

std::vector<std::size_t> lower_hull(const std::vector<KnapsackOption>& opts) {
  const auto f = pareto_front(opts);
  std::vector<std::size_t> h;
  for (std::size_t i : f) {
    // Pop while the last point lies on or above the segment from the one before it to i.
    while (h.size() >= 2) {
      const auto& a = opts[h[h.size() - 2]];
      const auto& b = opts[h.back()];
      const auto& c = opts[i];
      const double e1 = (a.cost - b.cost) / static_cast<double>(b.bits - a.bits);
      const double e2 = (b.cost - c.cost) / static_cast<double>(c.bits - b.bits);
      if (e2 >= e1)
        h.pop_back();
      else
        break;
    }
    h.push_back(i);
  }
  return h;
}

double lagrangian_dual(const Items& items, std::uint64_t budget, double lambda) {
  double g = -lambda * static_cast<double>(budget);
  for (const auto& it : items) {
    double m = std::numeric_limits<double>::infinity();
    for (const auto& o : it)
      m = std::min(m, o.cost + lambda * static_cast<double>(o.bits));
    g += m;
  }
  return g;
}

KnapsackSolution solve_mckp(const Items& items, std::uint64_t budget, std::uint64_t node_limit) {
  KnapsackSolution sol;
  const std::size_t n = items.size();
  if (n == 0) {
    sol.proven_optimal = true;
    return sol;
  }
  for (const auto& it : items)
    if (it.empty()) fail(ErrorKind::Usage, "an item has no options");
  const Prepared p = prepare(items);
  std::uint64_t min_bits = 0;
  for (std::size_t i = 0; i < n; ++i)
    min_bits += items[i][p.hull[i][0]].bits;
  if (min_bits > budget)
    fail(ErrorKind::Usage, "budget of " + std::to_string(budget) +
                               " bits is below the cheapest assignment (" +
                               std::to_string(min_bits) + " bits)");

  // 1. The relaxation and its rounding (hull positions reached before the critical segment).
  std::vector<std::size_t> pos;
  sol.bound = relaxation(items, p, 0, static_cast<double>(budget), &sol.lambda, &pos);
  std::vector<std::size_t> choice(n);
  std::uint64_t used = 0;
  for (std::size_t i = 0; i < n; ++i) {
    choice[i] = p.hull[i][pos[i]];
    used += items[i][choice[i]].bits;
  }
  // 2. Greedy repair: the best cost decrease per item that still fits, until nothing fits.
  for (bool improved = true; improved;) {
    improved = false;
    double best_gain = 0;
    std::size_t bi = 0, bj = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j : p.front[i]) {
        const auto& o = items[i][j];
        const auto& c = items[i][choice[i]];
        if (o.cost >= c.cost || used - c.bits + o.bits > budget) continue;
        const double gain = c.cost - o.cost;
        if (gain > best_gain) {
          best_gain = gain;
          bi = i;
          bj = j;
        }
      }
    if (best_gain > 0) {
      used = used - items[bi][choice[bi]].bits + items[bi][bj].bits;
      choice[bi] = bj;
      improved = true;
    }
  }
  // 3. Never worse than a uniform config (same option index everywhere) that fits.
  auto total = [&](const std::vector<std::size_t>& c) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i)
      s += items[i][c[i]].cost;
    return s;
  };
  bool aligned = true;
  for (const auto& it : items)
    aligned = aligned && it.size() == items[0].size();
  if (aligned)
    for (std::size_t j = 0; j < items[0].size(); ++j) {
      std::uint64_t b = 0;
      double c = 0;
      for (std::size_t i = 0; i < n; ++i) {
        b += items[i][j].bits;
        c += items[i][j].cost;
      }
      if (b <= budget && c < total(choice)) choice.assign(n, j);
    }
  // 4. Branch-and-bound to close the gap.
  double cost = total(choice);
  sol.proven_optimal = cost - sol.bound <= 1e-12 * std::max(1.0, std::fabs(cost));
  if (!sol.proven_optimal && node_limit > 0) {
    Search s{items,
             p,
             budget,
             node_limit,
             0,
             std::vector<std::uint64_t>(n + 1, 0),
             std::vector<std::size_t>(n),
             choice,
             cost};
    for (std::size_t i = n; i-- > 0;)
      s.min_bits_suffix[i] = s.min_bits_suffix[i + 1] + items[i][p.hull[i][0]].bits;
    s.run(0, 0.0, 0);
    sol.nodes = s.nodes;
    sol.proven_optimal = !s.aborted;
    if (s.best_cost < cost) choice = s.best;
  }
  sol.choice = choice;
  sol.cost = total(choice);
  sol.bits = 0;
  for (std::size_t i = 0; i < n; ++i)
    sol.bits += items[i][choice[i]].bits;
  return sol;
}

}  // namespace ckpt
