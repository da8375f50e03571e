#include "ckptkit/commands/analyze_spectrum/analyze_spectrum.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/progress.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/engine/shard.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/report/csv.hpp"
#include "ckptkit/report/html.hpp"
#include "ckptkit/report/markdown.hpp"

namespace ckpt {

namespace {

/// One matrix to analyse.
struct Item {
  const CheckpointTensor* base = nullptr;
  const CheckpointTensor* ft = nullptr;  // --compare
  const LoraModule* lora = nullptr;      // --adapter
  bool transposed = false;               // stored [in, out]: analysed as [out, in]
  std::int64_t rows = 0, cols = 0;       // as analysed
};

/// Layer index and module label from a tensor name: "model.layers.3.self_attn.q_proj.weight" →
/// (3, "self_attn.q_proj"); names without a numeric component → (-1, name).
std::pair<int, std::string> layer_and_module(const std::string& name) {
  std::string n = name;
  if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) n.resize(n.size() - 7);
  std::size_t start = 0;
  while (start <= n.size()) {
    const std::size_t dot = n.find('.', start);
    const std::string part =
        n.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() &&
        std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        part.size() < 7) {
      const int layer = std::stoi(part);
      return {layer, dot == std::string::npos ? std::string("(layer)") : n.substr(dot + 1)};
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return {-1, n};
}

/// f32 copy of a tensor as an [out, in] matrix (transposing Conv1D storage).
std::vector<float> load_matrix(const Checkpoint& c, const CheckpointTensor& t, bool transposed) {
  std::vector<float> v = to_f32(c.view(t));
  c.release(t);
  return transposed ? transpose(v, t.info.shape[0], t.info.shape[1]) : v;
}

double r6(double v) {
  return round_sig(v, 6);
}

Json metrics_json(const SpectrumMetrics& m) {
  return {{"spectral_norm", r6(m.spectral_norm)},
          {"frobenius_norm", r6(m.frobenius_norm)},
          {"stable_rank", r6(m.stable_rank)},
          {"effective_rank", r6(m.effective_rank)},
          {"entropy", r6(m.entropy)},
          {"energy_rank50", m.energy_rank50},
          {"energy_rank90", m.energy_rank90},
          {"energy_rank99", m.energy_rank99},
          {"condition_number",
           std::isfinite(m.condition_number) ? Json(r6(m.condition_number)) : Json("inf")},
          {"numerical_rank", m.numerical_rank},
          {"alpha", m.alpha.ok ? Json(r6(m.alpha.alpha)) : Json()},
          {"alpha_xmin", m.alpha.ok ? Json(r6(m.alpha.xmin)) : Json()},
          {"alpha_ks_d", m.alpha.ok ? Json(r6(m.alpha.D)) : Json()},
          {"alpha_sigma", m.alpha.ok ? Json(r6(m.alpha.sigma_alpha)) : Json()},
          {"alpha_n_tail", m.alpha.n_tail},
          {"alpha_weighted", r6(m.alpha_weighted)},
          {"log_norm", r6(m.log_norm)},
          {"log_spectral_norm", r6(m.log_spectral_norm)},
          {"mp_sigma2", r6(m.mp.sigma2)},
          {"mp_edge_sigma", r6(m.mp.edge_sigma)},
          {"mp_spikes", m.mp.spikes},
          {"mp_softrank", r6(m.mp.softrank)}};
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v)
    s += x;
  return s / static_cast<double>(v.size());
}

/// Names and shapes of two checkpoints must agree: throws Error(Format) listing what differs.
void check_same_layout(const Checkpoint& base, const Checkpoint& ft) {
  std::vector<std::string> diffs;
  for (const auto& t : base.tensors()) {
    const CheckpointTensor* o = ft.find(t.info.name);
    if (!o)
      diffs.push_back("'" + t.info.name + "' missing");
    else if (o->info.shape != t.info.shape)
      diffs.push_back("'" + t.info.name + "' shape " + shape_str(o->info.shape) + " vs base " +
                      shape_str(t.info.shape));
  }
  for (const auto& t : ft.tensors())
    if (!base.find(t.info.name)) diffs.push_back("'" + t.info.name + "' not in the base");
  if (diffs.empty()) return;
  std::string msg = ft.path().string() + ": " + std::to_string(diffs.size()) +
                    " tensor(s) differ from the base " + base.path().string() + ": ";
  for (std::size_t i = 0; i < diffs.size() && i < 5; ++i)
    msg += (i ? "; " : "") + diffs[i];
  if (diffs.size() > 5) msg += "; ...";
  fail(ErrorKind::Format, msg);
}

}  // namespace

/// What one analysed matrix gives the in-order sink.
struct Result {
  Json row;
  Json drift_row;
  Json intruders = Json::array();
  SpectrumPlotData plot;
};

/// The per-matrix work: the spectrum of W and, with --compare or --adapter, the drift of W + ΔW.
struct ItemAnalyzer {
  const AnalyzeSpectrumOptions& options;
  const Checkpoint& base;
  const std::optional<Checkpoint>& ft;
  const std::optional<LoraAdapter>& adapter;
  const SpectrumOptions& sopt;
  bool drift;

  Result operator()(const Item& it) const;
};

Result ItemAnalyzer::operator()(const Item& it) const {
  const std::string& name = it.base->info.name;
  Result r;
  try {
    const std::vector<float> w = load_matrix(base, *it.base, it.transposed);
    const auto [layer, module] = layer_and_module(name);
    r.row = {{"name", name}, {"layer", layer}, {"module", module}, {"shape", it.base->info.shape}};
    if (it.transposed) r.row["transposed"] = true;
    r.plot.name = name;
    if (!drift || (!it.ft && !it.lora)) {
      const Spectrum s = compute_spectrum({w.data(), it.rows, it.cols}, sopt);
      r.row["method"] = s.method;
      r.row.update(metrics_json(spectrum_metrics(s.sigma, it.rows, it.cols)));
      r.plot.sigma = s.sigma;
    } else {
      std::vector<float> wt;
      if (it.ft) {
        wt = load_matrix(*ft, *it.ft, it.transposed);
      } else {
        wt = lora_delta(*adapter, *it.lora);
        std::vector<float> delta = std::move(wt);
        // The delta is in storage layout [in, out]; analyse it as [out, in].
        if (it.transposed) delta = transpose(delta, it.cols, it.rows);
        wt.resize(w.size());
        for (std::size_t e = 0; e < w.size(); ++e)
          wt[e] = w[e] + delta[e];
      }
      const DriftResult dr =
          compute_drift({w.data(), it.rows, it.cols}, {wt.data(), it.rows, it.cols}, options.drift);
      r.row["method"] = dr.base.method;
      r.row.update(metrics_json(dr.base_metrics));
      const DriftMetrics& d = dr.drift;
      const auto angle_max = [](const std::vector<double>& a) {
        return a.empty() ? 0.0 : a.back();
      };
      r.drift_row = {
          {"name", name},
          {"layer", layer},
          {"module", module},
          {"rel_delta_fro", r6(d.rel_delta_fro)},
          {"delta_fro", r6(d.delta_fro)},
          {"delta_spectral", r6(d.delta_spectral)},
          {"delta_stable_rank", r6(d.delta_stable_rank)},
          {"delta_rank50", d.delta_rank50},
          {"delta_rank90", d.delta_rank90},
          {"delta_rank99", d.delta_rank99},
          {"angles_k", d.angles_k},
          {"angle_left_mean_deg", r6(mean_of(d.angles_left_deg))},
          {"angle_left_max_deg", r6(angle_max(d.angles_left_deg))},
          {"angle_right_mean_deg", r6(mean_of(d.angles_right_deg))},
          {"angle_right_max_deg", r6(angle_max(d.angles_right_deg))},
          {"intruders", d.intruders.size()},
          {"min_best_cos", d.best_cos.empty()
                               ? Json()
                               : Json(r6(*std::min_element(d.best_cos.begin(), d.best_cos.end())))},
          {"sorsa_dsigma", r6(d.sorsa_dsigma)},
          {"sorsa_dd", r6(d.sorsa_dd)},
          {"alpha_base", r6(d.alpha_base)},
          {"alpha_ft", r6(d.alpha_ft)},
          {"delta_alpha", r6(d.delta_alpha)},
          {"sigma1_base", r6(dr.base_metrics.spectral_norm)},
          {"sigma1_ft", r6(dr.ft_metrics.spectral_norm)},
          {"stable_rank_ft", r6(dr.ft_metrics.stable_rank)},
          {"mp_spikes_ft", dr.ft_metrics.mp.spikes}};
      Json angles_l = Json::array(), angles_r = Json::array();
      for (double a : d.angles_left_deg)
        angles_l.push_back(r6(a));
      for (double a : d.angles_right_deg)
        angles_r.push_back(r6(a));
      r.drift_row["angles_left_deg"] = angles_l;
      r.drift_row["angles_right_deg"] = angles_r;
      for (const auto& in : d.intruders)
        r.intruders.push_back({{"name", name},
                               {"layer", layer},
                               {"module", module},
                               {"index", in.index},
                               {"sigma", r6(in.sigma)},
                               {"best_cos", r6(in.best_cos)}});
      r.plot.sigma = dr.base.sigma;
      r.plot.sigma_ft = dr.ft.sigma;
      r.plot.sigma_delta = d.sigma_delta;
    }
  } catch (const Error& e) {
    throw Error(e.kind(), located(base.file_of(*it.base), name, e.what()));
  }
  return r;
}

/// The tables, one CSV each: spectrum, drift and intruders (drift modes), skipped, and every
/// singular value. Array columns (angles) stay in report.json only.
void write_tables(const Report& report, const Json& drift_rows, const Json& intruder_rows,
                  const Json& skipped, const std::vector<SpectrumPlotData>& plots, bool drift,
                  const std::filesystem::path& dir) {
  const std::vector<std::string> spectrum_cols = [&] {
    std::vector<std::string> c;
    if (!report.rows().empty())
      for (const auto& [k, v] : report.rows().front().items())
        if (v.is_primitive()) c.push_back(k);
    return c;
  }();
  Json rows_json = Json::array();
  for (const auto& r : report.rows())
    rows_json.push_back(r);
  CsvWriter::from_rows(rows_json,
                       spectrum_cols.empty() ? std::vector<std::string>{"name"} : spectrum_cols)
      .write(dir / "spectrum.csv");
  if (drift) {
    std::vector<std::string> dcols;
    if (!drift_rows.empty())
      for (const auto& [k, v] : drift_rows.front().items())
        if (v.is_primitive()) dcols.push_back(k);
    CsvWriter::from_rows(drift_rows, dcols.empty() ? std::vector<std::string>{"name"} : dcols)
        .write(dir / "drift.csv");
    CsvWriter::from_rows(intruder_rows, {"name", "layer", "module", "index", "sigma", "best_cos"})
        .write(dir / "intruders.csv");
  }
  CsvWriter::from_rows(skipped, {"name", "shape", "reason"}).write(dir / "skipped.csv");
  {
    CsvWriter sv(drift
                     ? std::vector<std::string>{"name", "index", "sigma", "sigma_ft", "sigma_delta"}
                     : std::vector<std::string>{"name", "index", "sigma"});
    for (const auto& p : plots)
      for (std::size_t i = 0; i < p.sigma.size(); ++i) {
        if (drift)
          sv.row({p.name, i, p.sigma[i], i < p.sigma_ft.size() ? Json(p.sigma_ft[i]) : Json(),
                  i < p.sigma_delta.size() ? Json(p.sigma_delta[i]) : Json()});
        else
          sv.row({p.name, i, p.sigma[i]});
      }
    sv.write(dir / "singular_values.csv");
  }
}

Json analyze_spectrum_totals(const Json& report, const std::vector<std::string>&) {
  const Json& rows = report["tensors"];
  const auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  std::uint64_t gram = 0, exact = 0;
  std::vector<double> alphas;
  for (const auto& r : rows) {
    (r["method"] == "gram-f64" ? gram : exact) += 1;
    if (r["alpha"].is_number()) alphas.push_back(r["alpha"].get<double>());
  }
  Json totals = {{"matrices", rows.size()},
                 {"skipped", report.value("skipped", Json::array()).size()},
                 {"gram_route", gram},
                 {"exact_route", exact},
                 {"alpha_mean", r6(mean_of(alphas))},
                 {"alpha_median", r6(median(alphas))}};
  if (!report.contains("drift")) return totals;
  const Json& drift_rows = report["drift"];
  std::uint64_t intruders = 0, with = 0;
  std::vector<double> rel, r90, dsig, dd, da;
  for (const auto& d : drift_rows) {
    const auto n = d["intruders"].get<std::uint64_t>();
    intruders += n;
    with += n > 0;
    rel.push_back(d["rel_delta_fro"].get<double>());
    r90.push_back(d["delta_rank90"].get<double>());
    dsig.push_back(d["sorsa_dsigma"].get<double>());
    dd.push_back(d["sorsa_dd"].get<double>());
    da.push_back(d["delta_alpha"].get<double>());
  }
  totals["compared"] = drift_rows.size();
  totals["rel_delta_fro_median"] = r6(median(rel));
  totals["rel_delta_fro_min"] = rel.empty() ? 0.0 : r6(*std::min_element(rel.begin(), rel.end()));
  totals["rel_delta_fro_max"] = rel.empty() ? 0.0 : r6(*std::max_element(rel.begin(), rel.end()));
  totals["intruders"] = intruders;
  totals["matrices_with_intruders"] = with;
  totals["delta_rank90_median"] = r6(median(r90));
  totals["sorsa_dsigma_mean"] = r6(mean_of(dsig));
  totals["sorsa_dd_mean"] = r6(mean_of(dd));
  totals["delta_alpha_mean"] = r6(mean_of(da));
  return totals;
}

Json run_analyze_spectrum(const AnalyzeSpectrumOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.compare && options.adapter)
    fail(ErrorKind::Usage, "--compare and --adapter cannot be used together");
  if (options.drift.intruder_k < 0 || options.drift.angles_k < 1)
    fail(ErrorKind::Usage, "--intruder-k must be >= 0 and --angles-k >= 1");
  const Checkpoint base = Checkpoint::open(options.input);
  std::optional<Checkpoint> ft;
  if (options.compare) {
    ft.emplace(Checkpoint::open(*options.compare));
    check_same_layout(base, *ft);
  }
  std::optional<LoraAdapter> adapter;
  std::map<std::string, const LoraModule*> lora_by_tensor;
  if (options.adapter) {
    adapter.emplace(read_lora_adapter(*options.adapter));
    if (adapter->config.use_dora)
      fail(ErrorKind::Unsupported,
           located(adapter->weights.string(), "",
                   "a DoRA adapter has no low-rank delta: turn it into a LoRA first (ckptkit "
                   "merge --to-lora BASE DORA_ADAPTER)"));
    resolve_lora_adapter(*adapter, base, checkpoint_naming(base, options.common.targets));
    for (const auto& m : adapter->modules)
      lora_by_tensor[lora_base_tensor(m)] = &m;
  }
  const bool drift = options.compare || options.adapter;
  const std::string mode = options.compare ? "compare" : options.adapter ? "adapter" : "spectrum";
  OutputDir out(
      options.common.output, options.common.force,
      [&] {
        std::vector<std::filesystem::path> in{options.input};
        if (options.compare) in.push_back(*options.compare);
        if (options.adapter) in.push_back(*options.adapter);
        return in;
      }(),
      options.common.report_path);

  // A tensor the user asked for that cannot be analysed is a visible skip, not an error; the
  // modules an adapter adapts are analysed whether targeted or not.
  const TargetSelection selection =
      select_targets(base, options.common.targets, {"analyze-spectrum", false, true, false});
  std::map<const CheckpointTensor*, const TargetWeight*> selected;
  std::map<const CheckpointTensor*, std::string> unfit;
  for (const auto& w : selection.targets)
    selected[w.tensor] = &w;
  for (const auto& s : selection.skipped)
    unfit[s.tensor] = s.reason;
  std::vector<Item> items;
  Json skipped = Json::array();
  for (const auto& t : base.tensors()) {
    const auto sit = selected.find(&t);
    const bool is_target = sit != selected.end();
    const auto lit = lora_by_tensor.find(t.info.name);
    const bool adapted = lit != lora_by_tensor.end();
    if (!is_target && !adapted) {
      if (const auto u = unfit.find(&t); u != unfit.end())
        skipped.push_back({{"name", t.info.name}, {"shape", t.info.shape}, {"reason", u->second}});
      continue;
    }
    if (t.info.shape.size() != 2 || !is_float(t.info.dtype)) {
      skipped.push_back({{"name", t.info.name},
                         {"shape", t.info.shape},
                         {"reason", t.info.shape.size() != 2 ? "not 2-D" : "not a float type"}});
      continue;
    }
    Item it;
    it.base = &t;
    it.ft = ft ? ft->find(t.info.name) : nullptr;
    it.lora = adapted ? lit->second : nullptr;
    // Embedding deltas and the base embedding share [num_embeddings, dim]: never transposed.
    it.transposed =
        is_target ? sit->second->conv1d : (adapted && it.lora->transposed && !it.lora->embedding);
    it.rows = it.transposed ? t.info.shape[1] : t.info.shape[0];
    it.cols = it.transposed ? t.info.shape[0] : t.info.shape[1];
    if (it.rows == 0 || it.cols == 0) {
      skipped.push_back(
          {{"name", t.info.name}, {"shape", t.info.shape}, {"reason", "empty matrix"}});
      continue;
    }
    items.push_back(it);
  }
  // --shard K/N: analyse this part's share only (docs/distributed.md).
  keep_my_shard(options.common.exec.shard, out.path(), base, items,
                [](const Item& i) { return i.base; });

  std::vector<Result> results(items.size());
  auto working_set = [&](std::size_t i) -> std::uint64_t {
    const auto m = static_cast<std::uint64_t>(items[i].rows),
               n = static_cast<std::uint64_t>(items[i].cols);
    const std::uint64_t k = std::min(m, n);
    const std::uint64_t one = 8 * (m * n + 3 * k * k + (m + n) * k) + 4 * m * n;
    return drift ? 3 * one : one;
  };
  SpectrumOptions sopt;
  sopt.exact_below = options.exact_below;
  const ItemAnalyzer analyze{options, base, ft, adapter, sopt, drift};
  std::uint64_t total = 0;
  for (const auto& it : items)
    total += it.base->info.nbytes();
  Progress progress("analyze-spectrum", total, options.common.exec.progress);
  auto work = [&](std::size_t i) -> Commit {
    progress.working_on(items[i].base->info.name);
    auto r = std::make_shared<Result>(analyze(items[i]));
    return [&results, &progress, &items, i, r] {
      results[i] = std::move(*r);
      progress.advance(items[i].base->info.nbytes(), items[i].base->info.name);
    };
  };
  run_ordered(items.size(), working_set, work, options.common.exec);
  progress.finish();

  Report report("analyze-spectrum", options.common.argv);
  report.add_input("checkpoint", options.input.string(), fingerprint(base));
  if (ft) report.add_input("compare", options.compare->string(), fingerprint(*ft));
  if (adapter) report.add_input("adapter", adapter->weights.string(), {});
  report.settings() = {{"mode", mode},
                       {"exact_below", options.exact_below},
                       {"intruder_k", options.drift.intruder_k},
                       {"intruder_eps", options.drift.intruder_eps},
                       {"angles_k", options.drift.angles_k},
                       {"targets", options.common.targets.target},
                       {"exclude", options.common.targets.exclude}};
  if (adapter)
    report.settings()["adapter"] = {{"r", adapter->config.r},
                                    {"lora_alpha", adapter->config.lora_alpha},
                                    {"use_rslora", adapter->config.use_rslora},
                                    {"fan_in_fan_out", adapter->config.fan_in_fan_out},
                                    {"modules", adapter->modules.size()},
                                    {"notes", adapter->notes}};
  Json drift_rows = Json::array(), intruder_rows = Json::array();
  std::vector<SpectrumPlotData> plots;
  for (auto& r : results) {
    report.add_row(r.row);
    if (!r.drift_row.is_null()) drift_rows.push_back(r.drift_row);
    for (auto& in : r.intruders)
      intruder_rows.push_back(in);
    plots.push_back(std::move(r.plot));
  }
  report.extra()["skipped"] = skipped;
  if (drift) {
    report.extra()["drift"] = drift_rows;
    report.extra()["intruders"] = intruder_rows;
  }
  report.totals() = analyze_spectrum_totals(report.to_json(), {});
  report.totals()["seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Json j = report.to_json();

  write_tables(report, drift_rows, intruder_rows, skipped, plots, drift, out.path());
  report.write(out.path() / "report.json");
  write_spectrum_html(j, plots, out.path() / "report.html");
  out.commit();
  out.write_report_copy(report.text());
  return j;
}

std::string analyze_spectrum_markdown(const Json& j) {
  std::string s;
  const Json& t = j["totals"];
  const std::string mode = j["settings"]["mode"];
  s += "## analyze-spectrum (" + mode + ")\n\n";
  s += std::to_string(t["matrices"].get<std::uint64_t>()) + " matrices analysed, " +
       std::to_string(t["skipped"].get<std::uint64_t>()) + " skipped; mean alpha " +
       json_cell_text(t["alpha_mean"]) + ", median " + json_cell_text(t["alpha_median"]) + ".\n";
  if (t.contains("intruders"))
    s += "Drift: relative ||dW||_F/||W||_F median " + json_cell_text(t["rel_delta_fro_median"]) +
         " (" + json_cell_text(t["rel_delta_fro_min"]) + " .. " +
         json_cell_text(t["rel_delta_fro_max"]) + "), dW 90%-energy rank median " +
         json_cell_text(t["delta_rank90_median"]) + ", " +
         std::to_string(t["intruders"].get<std::uint64_t>()) + " intruder dimensions in " +
         std::to_string(t["matrices_with_intruders"].get<std::uint64_t>()) +
         " matrices, mean SORSA dSigma " + json_cell_text(t["sorsa_dsigma_mean"]) + ", dD " +
         json_cell_text(t["sorsa_dd_mean"]) + ", mean d-alpha " +
         json_cell_text(t["delta_alpha_mean"]) + ".\n";
  s += "\n";
  s += markdown_table(j["tensors"],
                      {"name", "shape", "spectral_norm", "stable_rank", "effective_rank",
                       "energy_rank90", "condition_number", "alpha", "mp_spikes"});
  if (j.contains("drift") && !j["drift"].empty()) {
    s += "\n";
    s += markdown_table(
        j["drift"], {"name", "rel_delta_fro", "delta_stable_rank", "delta_rank90",
                     "angle_left_max_deg", "intruders", "sorsa_dsigma", "sorsa_dd", "delta_alpha"});
  }
  if (!j["skipped"].empty()) {
    s += "\nSkipped:\n\n";
    s += markdown_table(j["skipped"], {"name", "shape", "reason"});
  }
  return s;
}

}  // namespace ckpt
