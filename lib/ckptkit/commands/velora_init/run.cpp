#include "ckptkit/commands/velora_init/velora_init.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/progress.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/json_text.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/report/html.hpp"
#include "ckptkit/report/markdown.hpp"
#include "ckptkit/report/svg.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

using velora::Init;

/// One selected module: its part in each input file, in input order.
struct ModulePlan {
  std::string name;
  std::int64_t dim = 0;
  std::int64_t tokens = 0;
  std::vector<const CheckpointTensor*> parts;  // parts[f] lives in inputs f
};

/// The last dotted component ("model.decoder.layers.0.fc1" -> "fc1"): the module type of tables.
std::string module_type(const std::string& module) {
  const auto dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string mib(std::uint64_t bytes) {
  return fmt("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

/// Opens every input and checks the module names agree (same set in every file).
std::vector<Checkpoint> open_inputs(const std::vector<std::filesystem::path>& inputs) {
  if (inputs.empty()) fail(ErrorKind::Usage, "velora-init: no activation file given");
  std::vector<Checkpoint> cks;
  for (const auto& p : inputs) {
    cks.push_back(Checkpoint::open(p));
    if (cks.back().tensors().empty())
      fail(ErrorKind::Format,
           located(p.string(), "", "holds no tensors (an empty activation dump)"));
  }
  for (std::size_t f = 1; f < cks.size(); ++f) {
    for (const auto& t : cks[0].tensors())
      if (!cks[f].find(t.info.name))
        fail(ErrorKind::Format, located(inputs[f].string(), t.info.name,
                                        "missing here but present in " + inputs[0].string() +
                                            " (activation files must hold the same modules)"));
    for (const auto& t : cks[f].tensors())
      if (!cks[0].find(t.info.name))
        fail(ErrorKind::Format, located(inputs[f].string(), t.info.name,
                                        "not present in " + inputs[0].string() +
                                            " (activation files must hold the same modules)"));
  }
  return cks;
}

/// Selected modules with their shapes validated (2-D, float, same width everywhere, M ≤ D).
std::vector<ModulePlan> plan_modules(const VeloraInitOptions& o,
                                     const std::vector<Checkpoint>& cks) {
  TargetOptions topt = o.common.targets;
  if (topt.target.empty()) topt.target = {".*"};  // default: every tensor of the dump
  const TargetSelector sel(topt, std::nullopt);
  std::vector<ModulePlan> plans;
  for (const auto& t0 : cks[0].tensors()) {
    TensorInfo probe;
    probe.name = t0.info.name;
    probe.shape = {1, 1};
    if (!sel.decide(probe).selected) continue;
    ModulePlan m;
    m.name = t0.info.name;
    for (std::size_t f = 0; f < cks.size(); ++f) {
      const CheckpointTensor* t = cks[f].find(m.name);
      const std::string file = cks[f].file_of(*t);
      if (t->info.shape.size() != 2)
        fail(ErrorKind::Format,
             located(file, m.name,
                     "activations must be 2-D [tokens, D], got " + shape_str(t->info.shape)));
      if (!is_float(t->info.dtype))
        fail(
            ErrorKind::Format,
            located(file, m.name, std::string(dtype_name(t->info.dtype)) + " is not a float type"));
      const std::int64_t d = t->info.shape[1];
      if (d <= 0) fail(ErrorKind::Format, located(file, m.name, "width D must be positive, got 0"));
      if (f == 0) m.dim = d;
      if (d != m.dim)
        fail(ErrorKind::Format, located(file, m.name,
                                        "width " + std::to_string(d) + " differs from " +
                                            std::to_string(m.dim) + " in " + o.inputs[0].string()));
      m.tokens += t->info.shape[0];
      m.parts.push_back(t);
    }
    const std::string file0 = cks[0].file_of(*m.parts[0]);
    if (m.tokens == 0)
      fail(ErrorKind::Format, located(file0, m.name, "no tokens (0 rows in every file)"));
    if (o.groups <= 0 || o.groups > m.dim)
      fail(ErrorKind::Usage, located(file0, m.name,
                                     "--groups " + std::to_string(o.groups) + " must be in [1, " +
                                         std::to_string(m.dim) + "] (D, the input width)"));
    plans.push_back(std::move(m));
  }
  if (plans.empty())
    fail(ErrorKind::Usage, o.inputs[0].string() + ": no module selected by --target/--exclude");
  return plans;
}

/// Streams a module's rows from every file in order as f64, rejecting non-finite values.
velora::RowSource module_source(const ModulePlan& m, const std::vector<Checkpoint>& cks) {
  velora::RowSource src;
  src.dim = m.dim;
  src.for_each_block = [&m, &cks](const velora::BlockFn& fn) {
    const std::int64_t d = m.dim;
    const std::int64_t block = std::max<std::int64_t>(1, 65536 / d);
    std::vector<double> buf;
    for (std::size_t f = 0; f < m.parts.size(); ++f) {
      const CheckpointTensor& t = *m.parts[f];
      const TensorView v = cks[f].view(t);
      const std::size_t es = dtype_size(t.info.dtype);
      const std::int64_t rows = t.info.shape[0];
      for (std::int64_t r = 0; r < rows; r += block) {
        const std::int64_t n = std::min(block, rows - r);
        buf.resize(static_cast<std::size_t>(n * d));
        decode_to_f64(t.info.dtype,
                      v.bytes.subspan(static_cast<std::size_t>(r * d) * es,
                                      static_cast<std::size_t>(n * d) * es),
                      buf);
        for (std::int64_t i = 0; i < n * d; ++i)
          if (!std::isfinite(buf[static_cast<std::size_t>(i)]))
            fail(ErrorKind::Format,
                 located(cks[f].file_of(t), m.name,
                         "non-finite value " + fmt("%g", buf[static_cast<std::size_t>(i)]) +
                             " at row " + std::to_string(r + i / d) + ", column " +
                             std::to_string(i % d)));
        fn(buf.data(), n);
      }
    }
  };
  return src;
}

const velora::Projection& find_projection(const velora::Analysis& a, std::int64_t groups,
                                          Init init) {
  for (const auto& p : a.projections)
    if (p.groups == groups && p.init == init) return p;
  fail(ErrorKind::Internal, "velora-init: projection not computed");
}

Json fidelity_json(const velora::Fidelity& f) {
  return {{"energy_kept", round_sig(f.energy_kept)},
          {"grad_rel_err", round_sig(f.grad_rel_err)},
          {"x_rel_err", round_sig(f.x_rel_err)}};
}

Json memory_json(const velora::MemoryEstimate& e) {
  return {{"full_bytes", e.full_bytes},
          {"velora_bytes", e.compressed_bytes},
          {"saved_bytes", e.saved_bytes},
          {"ratio", round_sig(e.ratio)}};
}

/// The Llama-7B estimate (hidden 4096, intermediate 11008, 32 layers) at the same M and batch.
Json llama7b_estimate(const VeloraInitOptions& o, std::string& markdown) {
  struct Shape {
    const char* module;
    std::int64_t dim;
  };
  const Shape shapes[] = {{"q_proj", 4096}, {"v_proj", 4096}, {"down_proj", 11008}};
  const std::int64_t layers = 32;
  Json rows = Json::array();
  std::uint64_t vd_full = 0, vd_velora = 0, all_full = 0, all_velora = 0;
  std::vector<std::vector<std::string>> md;
  for (const auto& s : shapes) {
    const auto e = velora::memory_estimate(s.dim, o.groups, o.batch, o.seq, o.act_bytes, o.z_bytes);
    rows.push_back({{"module", s.module}, {"dim", s.dim}, {"per_layer", memory_json(e)}});
    all_full += e.full_bytes * layers;
    all_velora += e.compressed_bytes * layers;
    if (std::string(s.module) != "q_proj") {
      vd_full += e.full_bytes * layers;
      vd_velora += e.compressed_bytes * layers;
    }
    md.push_back({s.module, std::to_string(s.dim), mib(e.full_bytes), mib(e.compressed_bytes),
                  fmt("%.0f×", e.ratio)});
  }
  md.push_back({"v_proj+down_proj × 32 layers", "", mib(vd_full), mib(vd_velora),
                fmt("%.0f×", static_cast<double>(vd_full) / static_cast<double>(vd_velora))});
  md.push_back({"q+v+down × 32 layers", "", mib(all_full), mib(all_velora),
                fmt("%.0f×", static_cast<double>(all_full) / static_cast<double>(all_velora))});
  markdown += "\nLlama-7B shapes, M = " + std::to_string(o.groups) + ", batch " +
              std::to_string(o.batch) + " × " + std::to_string(o.seq) + " tokens, " +
              std::to_string(o.act_bytes) + "-byte inputs, " + std::to_string(o.z_bytes) +
              "-byte z:\n\n";
  markdown += markdown_table({"module", "D", "saved input / layer", "VeLoRA z / layer", "ratio"},
                             md, {false, true, true, true, true});
  return {{"layers", layers},
          {"groups", o.groups},
          {"batch", o.batch},
          {"seq", o.seq},
          {"modules", rows},
          {"v_proj_down_proj_total",
           {{"full_bytes", vd_full},
            {"velora_bytes", vd_velora},
            {"saved_bytes", vd_full - vd_velora}}},
          {"q_v_down_total",
           {{"full_bytes", all_full},
            {"velora_bytes", all_velora},
            {"saved_bytes", all_full - all_velora}}}};
}

/// Mean over the modules of one type of a fidelity field, per (M, init); NaN where a type has no
/// such M.
struct TypeSweep {
  std::string type;
  std::map<std::pair<std::int64_t, int>, std::pair<double, double>> energy;  // sum, count
  std::map<std::pair<std::int64_t, int>, std::pair<double, double>> grad;
};

std::vector<TypeSweep> aggregate_sweep(const std::vector<ModulePlan>& plans,
                                       const std::vector<velora::Analysis>& results) {
  std::vector<TypeSweep> types;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const std::string t = module_type(plans[i].name);
    auto it =
        std::find_if(types.begin(), types.end(), [&](const TypeSweep& s) { return s.type == t; });
    if (it == types.end()) {
      types.push_back({t, {}, {}});
      it = types.end() - 1;
    }
    for (const auto& p : results[i].projections) {
      const auto key = std::make_pair(p.groups, static_cast<int>(p.init));
      auto& e = it->energy[key];
      e.first += p.fidelity.energy_kept;
      e.second += 1;
      auto& g = it->grad[key];
      g.first += p.fidelity.grad_rel_err;
      g.second += 1;
    }
  }
  return types;
}

Json sweep_json(const std::vector<TypeSweep>& types) {
  Json out = Json::array();
  for (const auto& t : types) {
    Json pts = Json::array();
    for (const auto& [key, e] : t.energy) {
      const auto& g = t.grad.at(key);
      pts.push_back({{"groups", key.first},
                     {"init", std::string(velora::init_name(static_cast<Init>(key.second)))},
                     {"modules", static_cast<int>(e.second)},
                     {"mean_energy_kept", round_sig(e.first / e.second)},
                     {"mean_grad_rel_err", round_sig(g.first / g.second)}});
    }
    out.push_back({{"type", t.type}, {"points", pts}});
  }
  return out;
}

/// The sweep as a Markdown table: one row per M, per type the mean energy kept for both inits.
std::string sweep_markdown(const std::vector<TypeSweep>& types, bool grad) {
  std::set<std::int64_t> ms;
  for (const auto& t : types)
    for (const auto& [key, v] : t.energy)
      ms.insert(key.first);
  std::vector<std::string> header = {"M"};
  std::vector<bool> right = {true};
  for (const auto& t : types)
    for (Init init : {Init::BatchAverage, Init::TopSingular}) {
      header.push_back(t.type + " " + (init == Init::BatchAverage ? "BA" : "TS"));
      right.push_back(true);
    }
  std::vector<std::vector<std::string>> rows;
  for (std::int64_t m : ms) {
    std::vector<std::string> row = {std::to_string(m)};
    for (const auto& t : types)
      for (Init init : {Init::BatchAverage, Init::TopSingular}) {
        const auto& src = grad ? t.grad : t.energy;
        const auto it = src.find({m, static_cast<int>(init)});
        row.push_back(it == src.end() ? "" : fmt("%.4f", it->second.first / it->second.second));
      }
    rows.push_back(std::move(row));
  }
  return markdown_table(header, rows, right);
}

/// The sweep over M; `chosen` (--groups) is marked by a vertical line.
std::string sweep_plot(const std::vector<TypeSweep>& types, bool grad, std::int64_t chosen) {
  svg::LinePlot p;
  p.ref_lines.push_back(
      {false, static_cast<double>(chosen), "chosen M = " + std::to_string(chosen), "#555"});
  p.title = grad ? "Weight-gradient proxy error vs M (mean over layers)"
                 : "Energy kept vs M (mean over layers)";
  p.x_label = "M (num_groups)";
  p.y_label = grad ? "‖X̂ᵀX̂ − XᵀX‖ / ‖XᵀX‖" : "Σ⟨s,v⟩² / Σ‖s‖²";
  p.x_scale = svg::Scale::Log;
  if (!grad) {
    p.y_min = 0;
    p.y_max = 1;
  }
  p.width = 760;
  p.height = 440;
  for (std::size_t i = 0; i < types.size(); ++i)
    for (Init init : {Init::TopSingular, Init::BatchAverage}) {
      svg::Series s;
      s.label = types[i].type + " " + std::string(velora::init_name(init));
      s.color = svg::palette_color(i);
      s.dashed = init == Init::BatchAverage;
      s.markers = true;
      const auto& src = grad ? types[i].grad : types[i].energy;
      for (const auto& [key, v] : src)
        if (key.second == static_cast<int>(init)) {
          s.x.push_back(static_cast<double>(key.first));
          s.y.push_back(v.first / v.second);
        }
      p.series.push_back(std::move(s));
    }
  return svg::line_plot(p);
}

}  // namespace

/// The PEFT LoRA adapter velora-init extends (--adapter): its config, its tensors as stored, and
/// the modules its lora_A keys name (without the key prefix), checked before any output exists.
struct AdapterToExtend {
  fs::path dir;
  nlohmann::ordered_json config;
  std::optional<Checkpoint> weights;
  std::vector<std::string> modules;  // file order
};

AdapterToExtend read_adapter_to_extend(const VeloraInitOptions& o,
                                       const std::vector<ModulePlan>& plans) {
  AdapterToExtend a;
  a.dir = adapter_part(*o.adapter);
  const fs::path cfg_path = a.dir / "adapter_config.json";
  if (!fs::exists(cfg_path))
    fail(ErrorKind::Usage, o.adapter->string() + ": no adapter_config.json (a PEFT LoRA adapter)");
  a.config = read_ordered_json_file(cfg_path);
  if (!a.config.is_object() || a.config.value("peft_type", "") != "LORA")
    fail(ErrorKind::Usage, cfg_path.string() + ": peft_type is not LORA; VeLoRA is a LoRA variant");
  // PEFT picks one variant per layer; its Embedding and Conv layers refuse velora_config.
  if (a.config.value("use_dora", false))
    fail(ErrorKind::Usage, cfg_path.string() +
                               ": use_dora is true; PEFT's VeLoRA variant "
                               "replaces the plain LoRA forward, not DoRA's");
  a.weights = Checkpoint::open(a.dir / "adapter_model.safetensors");
  const std::string file = a.weights->path().string();
  std::set<std::string> have;
  for (const auto& p : plans)
    have.insert(p.name);
  for (const auto& t : a.weights->tensors()) {
    const std::string& k = t.info.name;
    if (k.find(".lora_embedding_") != std::string::npos)
      fail(ErrorKind::Usage,
           located(file, k,
                   "a LoRA on an embedding: PEFT's VeLoRA applies to Linear layers only (its "
                   "Embedding layer raises on velora_config)"));
    if (k.ends_with(kVeloraKeySuffix))
      fail(ErrorKind::Usage, located(file, k, "the adapter already holds VeLoRA vectors"));
    const std::string suffix = ".lora_A.weight";
    if (!k.ends_with(suffix)) continue;
    if (!k.starts_with(o.prefix))
      fail(ErrorKind::Usage, located(file, k, "does not start with --prefix '" + o.prefix + "'"));
    const std::string module =
        k.substr(o.prefix.size(), k.size() - o.prefix.size() - suffix.size());
    if (!have.count(module))
      fail(
          ErrorKind::Usage,
          located(file, module,
                  "no activations for this LoRA module in the dump (PEFT would give it a random "
                  "VeLoRA vector): dump its inputs (q/k/v share theirs: copy the tensor under each "
                  "name), or extend an adapter without it"));
    a.modules.push_back(module);
  }
  if (a.modules.empty()) fail(ErrorKind::Usage, file + ": no lora_A tensor");
  return a;
}

/// OUT/adapter: the adapter's tensors as stored plus a vector per LoRA module, and its config
/// with velora_config (init_type "random": PEFT then keeps the loaded vector for all of training).
void write_extended_adapter(const VeloraInitOptions& o, const AdapterToExtend& a,
                            const std::vector<OwnedTensor>& vectors, const fs::path& dir) {
  std::vector<OwnedTensor> tensors;
  for (const auto& t : a.weights->tensors()) {
    const TensorView v = a.weights->view(t);
    tensors.push_back({t.info.name, t.info.dtype, t.info.shape,
                       std::vector<std::byte>(v.bytes.begin(), v.bytes.end())});
  }
  for (const auto& module : a.modules) {
    const std::string key = o.prefix + module + kVeloraKeySuffix;
    for (const auto& v : vectors)
      if (v.name == key) tensors.push_back(v);
  }
  Metadata meta = a.weights->metadata();
  if (meta.empty()) meta = {{"format", "pt"}};
  write_safetensors_file(dir / "adapter_model.safetensors", tensors, meta);
  nlohmann::ordered_json cfg = a.config;
  cfg["velora_config"] = {{"num_groups", o.groups}, {"scale", o.scale}, {"init_type", "random"}};
  write_text_file(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

Json run_velora_init(const VeloraInitOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.groups <= 0)
    fail(ErrorKind::Usage, "--groups " + std::to_string(o.groups) + " must be a positive integer");
  if (o.batch <= 0 || o.seq <= 0) fail(ErrorKind::Usage, "--batch and --seq must be positive");
  if (!std::isfinite(o.scale)) fail(ErrorKind::Usage, "--scale must be finite");
  // One pass over calibration activations, seconds per module: not worth spreading out.
  if (o.common.exec.shard)
    fail(ErrorKind::Usage, "--shard: not supported by velora-init (run it on one machine)");
  const std::vector<Checkpoint> cks = open_inputs(o.inputs);
  const std::vector<ModulePlan> plans = plan_modules(o, cks);
  std::optional<AdapterToExtend> adapter;
  if (o.adapter) adapter = read_adapter_to_extend(o, plans);
  std::vector<fs::path> inputs = o.inputs;
  if (o.adapter) inputs.push_back(*o.adapter);
  OutputDir out(o.common.output, o.common.force, inputs, o.common.report_path);

  // Per module: both inits at M (the table compares them), all sweep M with --sweep.
  const std::vector<Init> inits = {Init::BatchAverage, Init::TopSingular};
  std::vector<velora::Analysis> results(plans.size());
  Progress progress("velora-init", plans.size(), o.common.exec.progress, "modules");
  run_ordered(
      plans.size(),
      [&](std::size_t i) {
        const auto d = static_cast<std::uint64_t>(plans[i].dim);
        return d * d * 8 * 2 + 65536 * 8;
      },
      [&](std::size_t i) -> Commit {
        const auto& m = plans[i];
        progress.working_on(m.name);
        const std::vector<std::int64_t> groups =
            o.sweep ? velora::sweep_groups(m.dim, o.groups) : std::vector<std::int64_t>{o.groups};
        try {
          results[i] = velora::analyze(module_source(m, cks), groups, inits);
        } catch (const Error& e) {
          if (e.kind() == ErrorKind::Format || e.kind() == ErrorKind::Usage) {
            const std::string msg = e.what();
            if (msg.find(m.name) == std::string::npos)
              throw Error(e.kind(), located(cks[0].file_of(*m.parts[0]), m.name, msg));
          }
          throw;
        }
        return [&progress, &m] { progress.advance(1, m.name); };
      },
      o.common.exec);
  progress.finish();

  Report report("velora-init", o.common.argv);
  for (std::size_t f = 0; f < cks.size(); ++f)
    report.add_input("activations", o.inputs[f].string(), fingerprint(cks[f]));
  report.settings() = {
      {"groups", o.groups},        {"init", std::string(velora::init_name(o.init))},
      {"scale", o.scale},          {"sweep", o.sweep},
      {"batch", o.batch},          {"seq", o.seq},
      {"act_bytes", o.act_bytes},  {"z_bytes", o.z_bytes},
      {"key_prefix", o.prefix},    {"key_suffix", kVeloraKeySuffix},
      {"peft_init_type", "random"}};

  std::vector<OwnedTensor> tensors;
  Json targets = Json::array();
  std::vector<std::vector<std::string>> md_rows;
  std::uint64_t total_full = 0, total_velora = 0;
  double sum_energy = 0;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const auto& m = plans[i];
    const auto& a = results[i];
    const auto& chosen = find_projection(a, o.groups, o.init);
    const auto& ba = find_projection(a, o.groups, Init::BatchAverage);
    const auto& ts = find_projection(a, o.groups, Init::TopSingular);
    const auto mem =
        velora::memory_estimate(m.dim, o.groups, o.batch, o.seq, o.act_bytes, o.z_bytes);
    total_full += mem.full_bytes;
    total_velora += mem.compressed_bytes;
    sum_energy += chosen.fidelity.energy_kept;
    const std::vector<float> v32(chosen.v.begin(), chosen.v.end());
    const std::string key = o.prefix + m.name + kVeloraKeySuffix;
    tensors.push_back(make_tensor(key, DType::F32, {chosen.group_dim}, v32));
    targets.push_back(m.name);
    Json row = {{"name", m.name},  // the activation tensor in the dump
                {"module", m.name},
                {"key", key},
                {"dim", m.dim},
                {"tokens", m.tokens},
                {"groups", o.groups},
                {"group_dim", chosen.group_dim},
                {"padding", chosen.group_dim * o.groups - m.dim},
                {"init", std::string(velora::init_name(o.init))},
                {"fidelity", fidelity_json(chosen.fidelity)},
                {"batch_average", fidelity_json(ba.fidelity)},
                {"top_singular", fidelity_json(ts.fidelity)},
                {"memory", memory_json(mem)}};
    if (o.sweep) {
      Json sw = Json::array();
      for (const auto& p : a.projections)
        sw.push_back({{"groups", p.groups},
                      {"group_dim", p.group_dim},
                      {"init", std::string(velora::init_name(p.init))},
                      {"fidelity", fidelity_json(p.fidelity)}});
      row["sweep"] = sw;
    }
    report.add_row(std::move(row));
    md_rows.push_back(
        {m.name, std::to_string(m.dim), std::to_string(m.tokens), std::to_string(o.groups),
         std::to_string(chosen.group_dim), fmt("%.4f", ba.fidelity.energy_kept),
         fmt("%.4f", ts.fidelity.energy_kept), fmt("%.4f", chosen.fidelity.grad_rel_err),
         mib(mem.full_bytes) + " → " + mib(mem.compressed_bytes), fmt("%.0f×", mem.ratio)});
  }

  std::string markdown = markdown_table(
      {"module", "D", "tokens", "M", "sub-token", "energy BA", "energy TS",
       "grad err (" + std::string(velora::init_name(o.init)) + ")",
       "saved input, batch " + std::to_string(o.batch) + "×" + std::to_string(o.seq), "ratio"},
      md_rows, {false, true, true, true, true, true, true, true, true, true});
  markdown += "\nTotal over " + std::to_string(plans.size()) + " layers: " + mib(total_full) +
              " → " + mib(total_velora) + " of saved inputs (" +
              fmt("%.0f×", static_cast<double>(total_full) / static_cast<double>(total_velora)) +
              ").\n";
  const Json llama = llama7b_estimate(o, markdown);
  report.extra()["llama7b_estimate"] = llama;

  // The vectors, keyed as PEFT's get_peft_model_state_dict saves the buffer.
  Metadata meta = {{"format", "pt"},
                   {"ckptkit.velora_init", std::string(velora::init_name(o.init))},
                   {"ckptkit.num_groups", std::to_string(o.groups)}};
  write_safetensors_file(out.path() / "velora_embed.safetensors", tensors, meta);
  Json cfg = {
      {"velora_config", {{"num_groups", o.groups}, {"scale", o.scale}, {"init_type", "random"}}},
      {"target_modules", targets}};
  write_text_file(out.path() / "velora_config.json", cfg.dump(2) + "\n");
  if (adapter) {
    write_extended_adapter(o, *adapter, tensors, out.part(kAdapterPart));
    report.settings()["adapter"] = o.adapter->string();
    report.settings()["adapter_modules"] = adapter->modules.size();
  }

  if (o.sweep) {
    const auto types = aggregate_sweep(plans, results);
    report.extra()["sweep_by_type"] = sweep_json(types);
    const std::string energy_md = sweep_markdown(types, false);
    const std::string grad_md = sweep_markdown(types, true);
    write_text_file(
        out.path() / "sweep.md",
        "Energy kept Σ⟨s,v⟩²/Σ‖s‖² (mean over layers; BA = batch-average, TS = "
        "top-singular)\n\n" +
            energy_md +
            "\nWeight-gradient proxy error ‖X̂ᵀX̂ − XᵀX‖_F/‖XᵀX‖_F (mean over layers)\n\n" + grad_md);
    HtmlPage page("velora-init sweep: " + o.inputs[0].filename().string());
    page.section("Energy kept vs M")
        .paragraph(
            "Each token is split into M sub-tokens of size ceil(D/M); v is the batch-average "
            "(dashed) or top-singular (solid) direction. Mean over the layers of each module type.")
        .svg(sweep_plot(types, false, o.groups))
        .section("Weight-gradient proxy error vs M")
        .paragraph(
            "X̂ replaces every sub-token s by ⟨s,v⟩v (padding cut off); the error is "
            "‖X̂ᵀX̂ − XᵀX‖_F / ‖XᵀX‖_F.")
        .svg(sweep_plot(types, true, o.groups))
        .section("Tables")
        .raw("<pre>" + html_escape(energy_md) + "\n" + html_escape(grad_md) + "</pre>")
        .section("Settings")
        .key_values(report.settings());
    page.write(out.path() / "sweep.html");
  }

  report.totals() = {
      {"modules", plans.size()},
      {"mean_energy_kept", round_sig(sum_energy / static_cast<double>(plans.size()))},
      {"saved_input_bytes", total_full},
      {"velora_bytes", total_velora},
      {"ratio", round_sig(static_cast<double>(total_full) / static_cast<double>(total_velora))},
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  report.write(out.path() / "report.json");
  out.commit();
  out.write_report_copy(report.text());
  Json j = report.to_json();
  j["markdown"] = markdown;
  return j;
}

std::string velora_init_summary(const Json& report, const std::string& output) {
  std::string out = report["markdown"].get<std::string>() + "\nwrote " + output + " (" +
                    std::to_string(report["totals"]["modules"].get<std::uint64_t>()) +
                    " vectors)\n";
  // A verdict on the energy kept: against what a random direction keeps of a sub-token (1/d).
  double random = 0;
  std::size_t n = 0;
  for (const auto& row : report["tensors"])
    if (row.value("group_dim", 0) > 0) random += 1.0 / row["group_dim"].get<double>(), ++n;
  const double kept = report["totals"].value("mean_energy_kept", 0.0);
  if (n > 0 && random > 0) {
    random /= static_cast<double>(n);
    out += strprintf(
        "verdict: the vectors keep %.1f%% of the sub-token energy on average, %.1fx what a random "
        "direction keeps (%.1f%%): %s\n",
        100 * kept, kept / random, 100 * random,
        kept / random >= 2 ? "the calibration found shared structure"
                           : "little shared structure; more or other calibration data, or a "
                             "smaller --groups (longer sub-tokens), may do better");
  }
  return out;
}

}  // namespace ckpt
