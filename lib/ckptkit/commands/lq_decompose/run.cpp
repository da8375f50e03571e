#include "ckptkit/commands/lq_decompose/lq_decompose.hpp"

#include <cmath>
#include <cstdio>
#include <memory>

#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/progress.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/decompose/lq.hpp"
#include "ckptkit/decompose/lq_budget.hpp"
#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/formats/bnb_layout.hpp"
#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"

namespace ckpt {
namespace fs = std::filesystem;
using quant::DoubleQuant;
using quant::QuantSpec;

namespace {

/// One weight to decompose.
struct Target {
  const CheckpointTensor* tensor = nullptr;
  const CheckpointTensor* fisher = nullptr;   // per-element F (storage shape)
  const CheckpointTensor* imatrix = nullptr;  // per-input-column vector
  std::string module;                         // the checkpoint's (imatrix lookups)
  std::string adapter_module;                 // the task model's (adapter keys, report rows)
  bool transposed = false;                    // Conv1D: stored [in, out]
  std::int64_t rows = 0, cols = 0;            // storage orientation (what is quantized)
  std::int64_t out = 0, in = 0;               // math orientation (the adapter's)
  QuantSpec spec;
  QuantLayout layout = QuantLayout::Ckptkit;
};

/// What one finished tensor hands to the in-order sink.
struct Done {
  LoraModule lora;
  Json row;
  double err_sq = 0, plain_sq = 0, other_sq = 0, norm_sq = 0;
  std::uint64_t bits = 0, numel = 0;
};

std::string dq_name(DoubleQuant d) {
  return d == DoubleQuant::Bnb ? "bnb" : d == DoubleQuant::Lq ? "lq" : "none";
}

QuantSpec resolve_spec(const LqDecomposeOptions& o) {
  QuantSpec s;
  s.scheme = quant::Scheme::parse(o.scheme);
  s.block = o.block;
  if (o.double_quant == "lq")
    s.dq = DoubleQuant::Lq;
  else if (o.double_quant == "bnb")
    s.dq = DoubleQuant::Bnb;
  else if (o.double_quant == "none")
    s.dq = DoubleQuant::None;
  else
    fail(ErrorKind::Usage, "--double-quant: '" + o.double_quant + "' is not lq, bnb or none");
  s.lq_bits = o.lq_bits;
  s.lq_group = o.lq_group;
  const auto sd = parse_float_dtype(o.lq_scale_dtype);
  if (!sd) fail(ErrorKind::Usage, "--lq-scale-dtype: unknown type '" + o.lq_scale_dtype + "'");
  s.lq_scale_dtype = *sd;
  s.validate();
  return s;
}

QuantLayout pick_layout(const std::string& layout, const QuantSpec& s, const std::string& what) {
  const QuantLayout autol = default_quant_layout(s);
  if (layout == "ckptkit") return QuantLayout::Ckptkit;
  if (layout == "bnb" && autol != QuantLayout::Bnb4bit)
    fail(ErrorKind::Usage,
         "--layout bnb: bitsandbytes stores nf4 and fp4 (block >= 32, double quant bnb "
         "or none), not " +
             what);
  return autol;
}

/// The Fisher / imatrix values of one target as LqWeights (storage orientation), validated.
LqWeights load_weights(const Target& tg, const Checkpoint* fisher, const Checkpoint* imatrix) {
  LqWeights w;
  auto check = [](const std::vector<float>& v, const std::string& file, const std::string& name) {
    check_finite(v, file, name);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i] < 0)
        fail(ErrorKind::Format,
             located(file, name, "negative importance weight at element " + std::to_string(i)));
  };
  if (tg.fisher) {
    w.fisher = to_f32(fisher->view(*tg.fisher));
    check(w.fisher, fisher->file_of(*tg.fisher), tg.fisher->info.name);
    fisher->release(*tg.fisher);
  }
  if (tg.imatrix) {
    std::vector<float> v = to_f32(imatrix->view(*tg.imatrix));
    check(v, imatrix->file_of(*tg.imatrix), tg.imatrix->info.name);
    // Per input column of the math orientation: the storage rows of a transposed weight.
    (tg.transposed ? w.row : w.col) = std::move(v);
  }
  return w;
}

}  // namespace

Json lq_decompose_totals(const Json& report, const std::vector<std::string>& files) {
  const Json& rows = report["tensors"];
  const std::uint64_t params = sum_of_counts(rows, "params"), bits = sum_of_counts(rows, "bits");
  const std::uint64_t adapter_params = sum_of_counts(rows, "adapter_params");
  const auto adapter_dtype = parse_dtype(report["settings"]["adapter_dtype"].get<std::string>());
  const double adapter_bytes = adapter_dtype ? double(dtype_size(*adapter_dtype)) : 4.0;
  const double err_sq = sum_of_row_sums(rows, "err_sq");
  const double nrm = std::sqrt(sum_of_row_sums(rows, "norm_sq"));
  const auto rel = [nrm](double sq) { return round_sig(nrm > 0 ? std::sqrt(sq) / nrm : 0.0, 8); };
  Json totals = {
      {"targets", rows.size()},
      {"params", params},
      {"bits", bits},
      {"bits_per_param", round_sig(params ? double(bits) / double(params) : 0.0, 8)},
      {"adapter_params", adapter_params},
      {"adapter_bits_per_param",
       round_sig(params ? double(adapter_params) * 8.0 * adapter_bytes / double(params) : 0.0, 6)},
      {"error", round_sig(std::sqrt(err_sq), 8)},
      {"rel_error", rel(err_sq)}};
  if (rows_have_sum(rows, "plain_sq"))
    totals["plain_rel_error"] = rel(sum_of_row_sums(rows, "plain_sq"));
  if (rows_have_sum(rows, "other_sq")) {
    const bool svd_first = report["settings"]["order"] == "svd-first";
    totals[svd_first ? "loftq_order_rel_error" : "lq_order_rel_error"] =
        rel(sum_of_row_sums(rows, "other_sq"));
  }
  totals["files"] = files;
  return totals;
}

/// Bytes in flight for one target: W, X, deq, E, R, the kept Q and the Fisher copy (f32 each).
std::uint64_t working_set(const Target& tg) {
  return static_cast<std::uint64_t>(tg.rows * tg.cols) * sizeof(float) * 8;
}

/// body(), with an error that does not name the target's tensor located at it.
template <class F>
auto with_name(const Checkpoint& in, const Target& tg, const F& body) {
  try {
    return body();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find(tg.tensor->info.name) != std::string::npos) throw;
    throw Error(e.kind(), located(in.file_of(*tg.tensor), tg.tensor->info.name, msg));
  }
}

/// The targets with their shapes and importance weights checked before any output exists.
std::vector<Target> validate_targets(const LqDecomposeOptions& o, const Checkpoint& in,
                                     const std::optional<Checkpoint>& fisher,
                                     const std::optional<Checkpoint>& imatrix,
                                     const TargetSelection& selection, const QuantSpec& uniform) {
  std::vector<Target> targets;
  for (const auto& w : selection.targets) {
    const CheckpointTensor& t = *w.tensor;
    const std::string file = in.file_of(t);
    Target tg;
    tg.tensor = &t;
    tg.module = w.module;
    tg.adapter_module = w.adapter_module;
    tg.transposed = w.conv1d;
    tg.rows = t.info.shape[0];
    tg.cols = t.info.shape[1];
    tg.out = tg.transposed ? tg.cols : tg.rows;
    tg.in = tg.transposed ? tg.rows : tg.cols;
    const std::int64_t kmax = std::min(tg.rows, tg.cols);
    if (o.rank >= kmax)
      fail(ErrorKind::Usage,
           located(file, t.info.name,
                   "rank " + std::to_string(o.rank) + " >= min(out, in) = " + std::to_string(kmax) +
                       " of shape " + shape_str(t.info.shape)));
    if (fisher) {
      tg.fisher = fisher->find(t.info.name);
      if (!tg.fisher)
        fail(ErrorKind::Usage,
             located(fisher->path().string(), t.info.name, "missing in the Fisher file"));
      if (tg.fisher->info.shape != t.info.shape)
        fail(ErrorKind::Usage, located(fisher->file_of(*tg.fisher), t.info.name,
                                       "Fisher shape " + shape_str(tg.fisher->info.shape) +
                                           " but the weight is " + shape_str(t.info.shape)));
      if (!is_float(tg.fisher->info.dtype))
        fail(ErrorKind::Usage, located(fisher->file_of(*tg.fisher), t.info.name,
                                       "Fisher tensor is not a float tensor"));
    }
    if (imatrix) {
      tg.imatrix = imatrix->find(t.info.name);
      if (!tg.imatrix) tg.imatrix = imatrix->find(tg.module);
      if (!tg.imatrix)
        fail(ErrorKind::Usage, located(imatrix->path().string(), t.info.name,
                                       "missing in the imatrix file (looked for '" + t.info.name +
                                           "' and '" + tg.module + "')"));
      if (tg.imatrix->info.shape != Shape{tg.in} || !is_float(tg.imatrix->info.dtype))
        fail(ErrorKind::Usage,
             located(imatrix->file_of(*tg.imatrix), tg.imatrix->info.name,
                     "imatrix must be a float vector of " + std::to_string(tg.in) +
                         " (input features) but is " + shape_str(tg.imatrix->info.shape)));
    }
    tg.spec = uniform;
    targets.push_back(tg);
  }
  return targets;
}

/// --budget-bits: the error of every candidate config on every target (cost table), then one
/// config per target minimising the total error within the budget (multiple-choice knapsack);
/// sets each target's spec and layout and returns the report's "budget" object.
Json allocate_budget(const LqDecomposeOptions& o, const Checkpoint& in,
                     std::vector<Target>& targets, const std::vector<QuantSpec>& candidates,
                     const LqParams& base, const Checkpoint* fp, const Checkpoint* ip) {
  std::uint64_t params = 0, min_bits = 0, max_bits = 0;
  std::vector<std::vector<KnapsackOption>> items(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const std::int64_t n = targets[i].rows * targets[i].cols;
    params += static_cast<std::uint64_t>(n);
    std::uint64_t mn = ~0ull, mx = 0;
    for (const auto& s : candidates) {
      const std::uint64_t b = lq_stored_bits(s, n);
      items[i].push_back({0.0, b});
      mn = std::min(mn, b);
      mx = std::max(mx, b);
    }
    min_bits += mn;
    max_bits += mx;
  }
  const double lo = double(min_bits) / double(params), hi = double(max_bits) / double(params);
  if (*o.budget_bits < lo || *o.budget_bits > hi) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "--budget-bits %.6g is outside what the %s candidates can store: %.6f (all "
                  "cheapest) .. %.6f (all most expensive) bits/param",
                  *o.budget_bits, o.candidates.c_str(), lo, hi);
    fail(ErrorKind::Usage, buf);
  }
  const auto budget = static_cast<std::uint64_t>(std::floor(*o.budget_bits * double(params)));
  const auto t0 = Clock::now();
  Progress progress("lq-decompose 1/2: error of each config", targets.size(),
                    o.common.exec.progress, "tensors");
  run_ordered(
      targets.size(), [&](std::size_t i) { return working_set(targets[i]) * 2; },
      [&](std::size_t i) -> Commit {
        const Target& tg = targets[i];
        progress.working_on(tg.tensor->info.name);
        auto costs = std::make_shared<std::vector<double>>(with_name(in, tg, [&] {
          std::vector<float> w = to_f32(in.view(*tg.tensor));
          check_finite(w, in.file_of(*tg.tensor), tg.tensor->info.name);
          in.release(*tg.tensor);
          const LqWeights lw = load_weights(tg, fp, ip);
          return lq_candidate_errors(w, tg.rows, tg.cols, base, candidates, o.candidate_iters,
                                     lw.empty() ? nullptr : &lw, tg.tensor->info.name);
        }));
        return [&items, &progress, &targets, i, costs] {
          for (std::size_t j = 0; j < costs->size(); ++j)
            items[i][j].cost = (*costs)[j];
          progress.advance(1, targets[i].tensor->info.name);
        };
      },
      o.common.exec);
  const double cand_seconds = seconds_since(t0);
  progress.phase("lq-decompose: solving the bit budget");
  const KnapsackSolution sol = solve_mckp(items, budget);
  progress.finish();
  std::size_t front_total = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    targets[i].spec = candidates[sol.choice[i]];
    targets[i].layout = pick_layout(o.layout, targets[i].spec, lq_config_label(targets[i].spec));
    front_total += pareto_front(items[i]).size();
  }
  // The best uniform config within the budget, for comparison (same cost table).
  Json best_uniform = nullptr;
  double best_uniform_cost = std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < candidates.size(); ++j) {
    std::uint64_t b = 0;
    double c = 0;
    for (const auto& it : items) {
      b += it[j].bits;
      c += it[j].cost;
    }
    if (b <= budget && c < best_uniform_cost) {
      best_uniform_cost = c;
      best_uniform = {{"config", lq_config_label(candidates[j])},
                      {"bits_per_param", round_sig(double(b) / double(params), 8)},
                      {"cost", round_sig(c, 8)}};
    }
  }
  return {{"budget_bits_per_param", *o.budget_bits},
          {"budget_bits", budget},
          {"candidates", o.candidates},
          {"candidate_configs", candidates.size()},
          {"candidate_iters", o.candidate_iters},
          {"candidate_seconds", round_sig(cand_seconds, 4)},
          {"pareto_options_mean", round_sig(double(front_total) / double(targets.size()), 4)},
          {"achieved_bits", sol.bits},
          {"achieved_bits_per_param", round_sig(double(sol.bits) / double(params), 8)},
          {"cost", round_sig(sol.cost, 8)},
          {"lower_bound", round_sig(sol.bound, 8)},
          {"gap", round_sig(sol.gap(), 6)},
          {"gap_rel", round_sig(sol.cost > 0 ? sol.gap() / sol.cost : 0.0, 6)},
          {"lambda", round_sig(sol.lambda, 6)},
          {"proven_optimal", sol.proven_optimal},
          {"bnb_nodes", sol.nodes},
          {"best_uniform", best_uniform}};
}

/// The per-tensor work: W = Q + s·B·A by the alternating loop, the comparisons (plain
/// quantization, the other order) and the row of the report.
struct TensorDecomposer {
  const LqDecomposeOptions& o;
  const Checkpoint& in;
  const LqParams& base;
  const Checkpoint* fp;
  const Checkpoint* ip;
  LqOrder order;
  double scaling;

  std::pair<Done, LqResult> operator()(const Target& tg, const TensorView& view) const;
};

std::pair<Done, LqResult> TensorDecomposer::operator()(const Target& tg,
                                                       const TensorView& view) const {
  const auto t0 = Clock::now();
  const auto& info = tg.tensor->info;
  std::vector<float> w = to_f32(view);
  check_finite(w, in.file_of(*tg.tensor), info.name);
  const LqWeights lw = load_weights(tg, fp, ip);
  const LqWeights* wp = lw.empty() ? nullptr : &lw;
  LqParams p = base;
  p.spec = tg.spec;
  LqResult r = lq_decompose_matrix(w, tg.rows, tg.cols, p, wp, info.name);
  const double secs = seconds_since(t0);
  Done d;
  d.norm_sq = r.norm * r.norm;
  d.err_sq = r.error * r.error;
  d.numel = static_cast<std::uint64_t>(w.size());
  d.bits = lq_stored_bits(tg.spec, static_cast<std::int64_t>(w.size()));
  Json errs = Json::array();
  for (double e : r.errors)
    errs.push_back(round_sig(r.norm > 0 ? e / r.norm : 0.0));
  d.row = {{"name", info.name},
           {"module", tg.adapter_module},
           {"shape", info.shape},
           {"dtype", std::string(dtype_name(info.dtype))},
           {"transposed", tg.transposed},
           {"config", lq_config_label(tg.spec)},
           {"scheme", tg.spec.scheme.name()},
           {"block", tg.spec.block},
           {"double_quant", dq_name(tg.spec.dq)},
           {"layout", quant_layout_name(tg.layout)},
           {"bits_per_param", round_sig(double(d.bits) / double(d.numel), 8)},
           {"bits_per_param_formula", round_sig(quant::formula_bits_per_param(tg.spec), 8)},
           {"rank", o.rank},
           {"order", lq_order_name(order)},
           {"iterations", r.errors.size()},
           {"best_iter", r.best_iter},
           {"rel_errors", errs},
           {"rel_error", round_sig(r.rel_error())}};
  if (o.compare) {
    const double plain = lq_plain_error(w, tg.rows, tg.cols, tg.spec, wp);
    d.plain_sq = plain * plain;
    d.row["plain_rel_error"] = round_sig(r.norm > 0 ? plain / r.norm : 0.0);
    d.row["vs_plain"] = round_sig(plain > 0 ? r.error / plain : 1.0, 6);
    if (o.rank > 0) {
      LqParams q = p;
      q.order = order == LqOrder::SvdFirst ? LqOrder::QuantizeFirst : LqOrder::SvdFirst;
      const double other = lq_decompose_matrix(w, tg.rows, tg.cols, q, wp, info.name).error;
      d.other_sq = other * other;
      const std::string key = order == LqOrder::SvdFirst ? "loftq" : "lq";
      d.row[key + "_order_rel_error"] = round_sig(r.norm > 0 ? other / r.norm : 0.0);
      d.row["vs_" + key + "_order"] = round_sig(other > 0 ? r.error / other : 1.0, 6);
    }
  }
  d.row["seconds"] = round_sig(secs, 4);
  d.row["seconds_total"] = round_sig(seconds_since(t0), 4);
  if (o.rank > 0) {
    LqAdapterFactors f = lq_adapter_factors(r, scaling);
    d.lora.module = tg.adapter_module;
    d.lora.rank = o.rank;
    d.lora.in = tg.in;
    d.lora.out = tg.out;
    if (tg.transposed) {
      // Stored S = Wᵀ ≈ Q + L1·L2, so W ≈ Qᵀ + L2ᵀ·L1ᵀ: B = L2ᵀ/√s, A = L1ᵀ/√s.
      d.lora.B = transpose(f.A, o.rank, tg.cols);
      d.lora.A = transpose(f.B, tg.rows, o.rank);
    } else {
      d.lora.A = std::move(f.A);
      d.lora.B = std::move(f.B);
    }
    round_to(o.adapter_dtype, d.lora.A);
    round_to(o.adapter_dtype, d.lora.B);
    for (const auto* factor : {&d.lora.A, &d.lora.B})
      check_computed_finite(
          *factor, in.file_of(*tg.tensor), tg.tensor->info.name,
          "the adapter factor (stored as " + std::string(dtype_name(o.adapter_dtype)) + ")");
  }
  return {std::move(d), std::move(r)};
}

Json run_lq_decompose(const LqDecomposeOptions& o) {
  const auto start = Clock::now();
  if (o.rank < 0) fail(ErrorKind::Usage, "--rank must be >= 0");
  if (o.max_iter < 1) fail(ErrorKind::Usage, "--max-iter must be at least 1");
  if (o.alpha && !(*o.alpha > 0)) fail(ErrorKind::Usage, "--alpha must be positive");
  if (o.niter < 0 || o.oversample < 0)
    fail(ErrorKind::Usage, "--niter and --oversample must be >= 0");
  if (o.candidate_iters < 1) fail(ErrorKind::Usage, "--candidate-iters must be at least 1");
  if (o.layout != "auto" && o.layout != "bnb" && o.layout != "ckptkit")
    fail(ErrorKind::Usage, "--layout: '" + o.layout + "' is not auto, bnb or ckptkit");
  if (o.budget_bits && !std::isfinite(*o.budget_bits))
    fail(ErrorKind::Usage, "--budget-bits must be a finite number");
  const LqOrder order = o.order;
  const QuantSpec uniform = resolve_spec(o);
  const std::vector<QuantSpec> candidates =
      o.budget_bits ? lq_candidate_specs(o.candidates) : std::vector<QuantSpec>{};

  const Checkpoint in = Checkpoint::open(o.input);
  if (is_quantized_checkpoint(in))
    fail(ErrorKind::Usage, located(in.path().string(), "",
                                   "the input is already quantized; dequantize it first (ckptkit "
                                   "quantize --dequantize)"));
  std::optional<Checkpoint> fisher, imatrix;
  if (o.fisher) fisher = Checkpoint::open(*o.fisher);
  if (o.imatrix) imatrix = Checkpoint::open(*o.imatrix);
  const TargetSelection selection =
      select_targets(in, o.common.targets, {"lq-decompose", true, false, true});
  const std::vector<std::string>& candidates_modules = selection.candidates;
  const std::vector<std::string>& skip = selection.left_alone;

  std::vector<Target> targets = validate_targets(o, in, fisher, imatrix, selection, uniform);
  if (!o.budget_bits)
    for (auto& tg : targets)
      tg.layout = pick_layout(o.layout, tg.spec, lq_config_label(tg.spec));

  LqParams base;
  base.rank = o.rank;
  base.max_iter = o.max_iter;
  base.order = order;
  base.exact_svd = o.exact_svd;
  base.oversample = o.oversample;
  base.niter = o.niter;
  base.seed = o.common.seed;
  base.parallel = parallel_chunks;
  const Checkpoint* fp = fisher ? &*fisher : nullptr;
  const Checkpoint* ip = imatrix ? &*imatrix : nullptr;

  const Json budget_json =
      o.budget_bits ? allocate_budget(o, in, targets, candidates, base, fp, ip) : Json(nullptr);

  std::vector<fs::path> inputs{o.input};
  if (o.fisher) inputs.push_back(*o.fisher);
  if (o.imatrix) inputs.push_back(*o.imatrix);
  OutputDir out(o.common.output, o.common.force, inputs, o.common.report_path);
  const fs::path adapter_dir = out.part(kAdapterPart);
  const fs::path quant_dir = out.part(kQuantizedPart);
  const double alpha = o.alpha.value_or(16.0);
  const double scaling = o.rank > 0 ? alpha / o.rank : 1.0;

  const TensorDecomposer work{o, in, base, fp, ip, order, scaling};

  std::vector<LoraModule> modules;
  std::vector<Json> rows;
  auto collect = [&](Done& d) {
    // The raw sums the totals fold over (in checkpoint order, in a run and in stitch alike).
    d.row["params"] = d.numel;
    d.row["bits"] = d.bits;
    d.row["adapter_params"] = d.lora.A.size() + d.lora.B.size();
    Json sums = {{"err_sq", d.err_sq}, {"norm_sq", d.norm_sq}};
    if (o.compare) sums["plain_sq"] = d.plain_sq;
    if (o.compare && o.rank > 0) sums["other_sq"] = d.other_sq;
    d.row["sums"] = sums;
    if (o.rank > 0) modules.push_back(std::move(d.lora));
    rows.push_back(std::move(d.row));
  };

  const StreamJob job = targets_job(
      in, targets,
      [](const Target& tg) {
        return std::pair{quantized_specs(tg.layout, tg.spec, tg.tensor->info), working_set(tg)};
      },
      [&](const Target& tg, const TensorView& v, std::vector<OwnedTensor>& outputs) {
        auto [done, r] = work(tg, v);
        outputs = quantized_tensors(tg.layout, tg.spec, tg.tensor->info, std::move(r.q));
        return std::move(done);
      },
      collect);
  WriterOptions wo = writer_options(o.common, in.metadata());
  wo.write_metadata = true;
  if (wo.metadata.empty()) wo.metadata = {{"format", "pt"}};
  const auto files = stream_checkpoint(job, quant_dir, wo, o.common.exec,
                                       o.budget_bits ? "lq-decompose 2/2" : "lq-decompose");

  // config.json: transformers' quantization_config when every target is bnb 4-bit, else ckptkit's.
  copy_model_files(in, quant_dir, [&](nlohmann::json& c) {
    bool all_bnb = true, any_dq = false;
    std::string quant_type = uniform.scheme.name();  // the budget mixes NF widths only
    for (const auto& tg : targets) {
      all_bnb = all_bnb && tg.layout == QuantLayout::Bnb4bit;
      any_dq = any_dq || tg.spec.dq == DoubleQuant::Bnb;
      quant_type = tg.spec.scheme.name();
    }
    if (all_bnb) {
      c["quantization_config"] =
          bnb::quantization_config(true, quant_type, o.compute_dtype, any_dq, skip);
    } else {
      c["ckptkit_quantization"] = {{"format", "ckptkit-quant"},
                                   {"version", 1},
                                   {"scheme", o.budget_bits ? "mixed" : uniform.scheme.name()},
                                   {"block", o.budget_bits ? Json("mixed") : Json(uniform.block)},
                                   {"double_quant", o.budget_bits ? "lq" : dq_name(uniform.dq)}};
    }
  });

  if (o.rank > 0) {
    LoraConfig cfg;
    std::vector<std::string> adapted;
    for (const auto& m : modules)
      adapted.push_back(m.module);
    cfg.r = o.rank;
    cfg.lora_alpha = alpha;
    cfg.fan_in_fan_out = selection.fan_in_fan_out;
    cfg.target_modules = target_modules_for(adapted, candidates_modules);
    cfg.base_model_name_or_path = adapter_base_model(o.common, in, o.input);
    cfg.extra["task_type"] = std::string(task_type_name(o.common.targets.task));
    write_lora_adapter(adapter_dir, cfg, modules, o.adapter_dtype);
  }

  Report report("lq-decompose", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  if (fisher) report.add_input("fisher", o.fisher->string(), fingerprint(*fisher));
  if (imatrix) report.add_input("imatrix", o.imatrix->string(), fingerprint(*imatrix));
  report.settings() = {{"rank", o.rank},
                       {"alpha", alpha},
                       {"scaling", round_sig(scaling)},
                       {"order", lq_order_name(order)},
                       {"max_iter", o.max_iter},
                       {"svd", o.exact_svd ? "exact" : "randomized"},
                       {"niter", o.exact_svd ? Json(nullptr) : Json(o.niter)},
                       {"oversample", o.exact_svd ? Json(nullptr) : Json(o.oversample)},
                       {"config", o.budget_bits ? Json("budget") : Json(lq_config_label(uniform))},
                       {"layout", o.layout},
                       {"weighting", fisher    ? "fisher"
                                     : imatrix ? "imatrix"
                                               : "none"},
                       {"seed", o.common.seed},
                       {"adapter_dtype", std::string(dtype_name(o.adapter_dtype))}};
  // What the adapter names assume (family, prefix, layout): a warning for unknown families.
  report.settings()["module_naming"] = selection.naming.assumption;
  for (auto& r : rows)
    report.add_row(r);
  Json totals = lq_decompose_totals(report.to_json(), files);
  if (o.budget_bits) totals["budget"] = budget_json;
  totals["seconds"] = round_sig(seconds_since(start), 4);
  report.totals() = totals;
  return commit_with_report(report, out, o.common);
}

std::string lq_decompose_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf, "wrote %s: %zu matrices, %.4f bits/param, rel error %.4g, %.2fs\n",
                output.c_str(), static_cast<std::size_t>(t["targets"].get<std::uint64_t>()),
                t["bits_per_param"].get<double>(), t["rel_error"].get<double>(),
                t["seconds"].get<double>());
  std::string out = buf;
  // LQ-LoRA stops when the error stops falling; a matrix whose last allowed iteration still
  // lowered its error by more than 0.1% was cut short by --max-iter.
  const auto max_iter = report["settings"].value("max_iter", 0);
  std::size_t cut = 0, n = 0;
  for (const auto& row : report["tensors"]) {
    if (!row.contains("rel_errors") || row.value("rank", 0) == 0) continue;
    ++n;
    const auto& e = row["rel_errors"];
    if (static_cast<int>(e.size()) < max_iter || e.size() < 2) continue;
    const double last = e[e.size() - 1].get<double>(), before = e[e.size() - 2].get<double>();
    if (last < before && before - last > 1e-3 * last) ++cut;
  }
  if (cut > 0)
    out += strprintf(
        "warning: %zu of %zu matrices were still improving (by more than 0.1%% in the last "
        "iteration) at --max-iter %d; a higher --max-iter lowers their error\n",
        cut, n, max_iter);
  return out;
}

}  // namespace ckpt
