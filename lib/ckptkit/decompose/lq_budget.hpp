// Bit-budget allocation for LQ-LoRA (quant-anchors.md §1.4): one quantization config per matrix
// minimising the total (squared) error under a total storage budget — a multiple-choice knapsack.
// LQ-LoRA hands it to Gurobi; here it is solved without a MIP solver, as llama.cpp's --target-bpw
// does: each matrix's options are cut to their Pareto front, the Lagrangian (= LP) relaxation is
// solved exactly by walking the fronts' lower convex hulls in order of decreasing efficiency, the
// rounded solution is repaired greedily, and a branch-and-bound bounded by that same relaxation
// closes the gap when it can within a node limit. The relaxation's value is a lower bound on every
// feasible assignment, so cost − bound bounds how far from optimal the answer can be.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {

/// The candidate quantization configs of a named set:
///   "default"  NF{2,3,4,8} × block {16,32,64} × LQ scale configs (b0 ∈ {4, 8}) × (B1, b1) ∈
///              {(256, fp32), (64, bf16)}: 48 configs
///   "lq-lora"  LQ-LoRA's enumeration, NF{2,3,4,8} × b0 {2,3,4,8} × b1 {bf16,fp16,fp32} ×
///              B0 {16,32,64} × B1 {16,64,256}: 432 configs
/// Error(Usage) for another name.
std::vector<quant::QuantSpec> lq_candidate_specs(const std::string& set);

/// A short config name: "nf3-b64-lq8x256-f32", "nf4-b64-bnb", "nf4-b64".
std::string lq_config_label(const quant::QuantSpec& spec);

/// Exact bits stored for a `numel`-element weight quantized with `spec`: packed codes, block
/// scales, second-level scales, offset and codebook, as quant::stored_bits_per_param counts them.
std::uint64_t lq_stored_bits(const quant::QuantSpec& spec, std::int64_t numel);

/// One option of one item: its cost (squared error) and weight (bits).
struct KnapsackOption {
  double cost = 0;
  std::uint64_t bits = 0;
};

/// Indices of the Pareto front of `opts`: bits strictly increasing, cost strictly decreasing (of
/// equal options the first index is kept).
std::vector<std::size_t> pareto_front(const std::vector<KnapsackOption>& opts);

/// Indices of the lower convex hull of the Pareto front (bits increasing, efficiencies
/// −Δcost/Δbits strictly decreasing).
std::vector<std::size_t> lower_hull(const std::vector<KnapsackOption>& opts);

struct KnapsackSolution {
  std::vector<std::size_t> choice;  ///< option index per item
  double cost = 0;                  ///< Σ cost of the choice
  std::uint64_t bits = 0;           ///< Σ bits of the choice (≤ budget)
  double bound = 0;                 ///< the Lagrangian/LP relaxation's value (≤ the optimum)
  double lambda = 0;                ///< the optimal multiplier (cost per bit)
  bool proven_optimal = false;      ///< branch-and-bound finished (or the bound was reached)
  std::uint64_t nodes = 0;          ///< branch-and-bound nodes visited
  double gap() const { return cost - bound; }
};

/// Minimises Σ cost over one option per item with Σ bits ≤ budget. Error(Usage) when even the
/// cheapest options exceed the budget. `node_limit` caps the branch-and-bound (0: none run).
KnapsackSolution solve_mckp(const std::vector<std::vector<KnapsackOption>>& items,
                            std::uint64_t budget, std::uint64_t node_limit = 200000);

/// The Lagrangian dual g(λ) = Σ_i min_j (c_ij + λ·w_ij) − λ·budget, a lower bound on the
/// optimum for every λ ≥ 0 (maximised at KnapsackSolution::lambda, where it equals `bound`).
double lagrangian_dual(const std::vector<std::vector<KnapsackOption>>& items, std::uint64_t budget,
                       double lambda);

}  // namespace ckpt
