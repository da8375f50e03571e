// `ckptkit merge --to-lora`: a fine-tuned PiSSA / SORSA adapter (trained factors A, B over the
// residual) into a plain LoRA for the original base, ΔW = s·(B·A − B₀·A₀).
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/adapters/sorsa_read.hpp"
#include "ckptkit/commands/merge/converted_lora.hpp"
#include "ckptkit/commands/merge/merge.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/decompose/lowrank_update.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

/// A LoRA or SORSA adapter as a LoRA (SORSA: √S folded into both factors), and its format.
std::pair<LoraAdapter, std::string> read_as_lora(const fs::path& given) {
  const fs::path dir = adapter_part(given);  // an svd-init output root: its adapter/
  if (!fs::exists(dir)) fail(ErrorKind::Usage, located(dir.string(), "", "no such adapter"));
  if (is_mpo_adapter(dir))
    fail(ErrorKind::Unsupported,
         located(dir.string(), "",
                 "--to-lora converts LoRA-shaped adapters; MPO adapters have no "
                 "low-rank form (merge them with `ckptkit merge` instead)"));
  if (is_sorsa_adapter(dir)) return {sorsa_as_lora(read_sorsa_adapter(dir)), "sorsa"};
  return {read_lora_adapter(dir), "lora"};
}

RowMatrixXf as_matrix(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  return Eigen::Map<const RowMatrixXf>(v.data(), rows, cols);
}

std::vector<float> as_vector(const RowMatrixXf& m) {
  return std::vector<float>(m.data(), m.data() + m.size());
}

}  // namespace

Json run_to_lora(const ToLoraOptions& o) {
  const auto start = Clock::now();
  if (o.rank && *o.rank < 1) fail(ErrorKind::Usage, "--rank must be at least 1");
  auto init_read = read_as_lora(o.init_adapter);
  auto trained_read = read_as_lora(o.trained_adapter);
  const LoraAdapter& init = init_read.first;
  const LoraAdapter& trained = trained_read.first;
  const std::string& init_format = init_read.second;
  const std::string& trained_format = trained_read.second;
  if (init_format != trained_format)
    fail(ErrorKind::Usage, "--to-lora: the initial adapter is " + init_format +
                               " but the trained one is " + trained_format);
  const std::string tfile = trained.weights.string();
  std::map<std::string, const LoraModule*> init_of;
  for (const auto& m : init.modules)
    init_of[m.module] = &m;
  if (init.config.fan_in_fan_out != trained.config.fan_in_fan_out ||
      init.config.use_rslora != trained.config.use_rslora)
    fail(ErrorKind::Format,
         located(tfile, "", "fan_in_fan_out / use_rslora differ from the initial adapter's"));
  for (const auto& m : trained.modules) {
    const auto it = init_of.find(m.module);
    if (it == init_of.end())
      fail(ErrorKind::Format,
           located(tfile, m.module, "not in the initial adapter " + init.weights.string()));
    const LoraModule& m0 = *it->second;
    if (m0.in != m.in || m0.out != m.out || m0.rank != m.rank || m0.embedding != m.embedding)
      fail(ErrorKind::Format,
           located(tfile, m.module,
                   "shape differs from the initial adapter's (rank " + std::to_string(m.rank) +
                       " vs " + std::to_string(m0.rank) + ", [" + std::to_string(m.out) + ", " +
                       std::to_string(m.in) + "] vs [" + std::to_string(m0.out) + ", " +
                       std::to_string(m0.in) + "])"));
    const double s = trained.config.scaling_for(m.module), s0 = init.config.scaling_for(m.module);
    if (std::fabs(s - s0) > 1e-12 * std::fabs(s0))
      fail(ErrorKind::Format, located(tfile, m.module,
                                      "scaling " + std::to_string(s) +
                                          " differs from the initial "
                                          "adapter's " +
                                          std::to_string(s0)));
  }
  if (init.modules.size() != trained.modules.size())
    for (const auto& m : init.modules) {
      bool found = false;
      for (const auto& t : trained.modules)
        found = found || t.module == m.module;
      if (!found)
        fail(ErrorKind::Format,
             located(init.weights.string(), m.module, "not in the trained adapter " + tfile));
    }

  OutputDir out(o.common.output, o.common.force, {o.init_adapter, o.trained_adapter},
                o.common.report_path);
  std::vector<ConvertedModule> done(trained.modules.size());
  run_ordered(
      trained.modules.size(),
      [&](std::size_t i) {
        const auto& m = trained.modules[i];
        return static_cast<std::uint64_t>((m.in + m.out) * 2 * m.rank) * 24;
      },
      [&](std::size_t i) -> Commit {
        const auto t0 = Clock::now();
        const LoraModule& m = trained.modules[i];
        const LoraModule& m0 = *init_of.at(m.module);
        const double s = trained.config.scaling_for(m.module);
        ConvertedModule c;
        c.module.module = m.module;
        c.module.embedding = m.embedding;
        c.module.in = m.in;
        c.module.out = m.out;
        const RowMatrixXf B = as_matrix(m.B, m.out, m.rank), A = as_matrix(m.A, m.rank, m.in);
        const RowMatrixXf B0 = as_matrix(m0.B, m0.out, m0.rank),
                          A0 = as_matrix(m0.A, m0.rank, m0.in);
        const int kmax =
            static_cast<int>(std::min<std::int64_t>(2 * m.rank, std::min(m.in, m.out)));
        const int keep = o.rank ? std::min(*o.rank, kmax) : 2 * m.rank;
        // The singular values of the exact difference (cheap: QR of out×2r and in×2r).
        TruncatedDifference td = truncate_difference(B, A, B0, A0, o.rank ? keep : 1);
        c.total = s * s * td.total_energy;
        if (!o.rank) {
          // PEFT's exact rewrite: A' = [A ; A₀], B' = [B | −B₀], same scaling at rank 2r.
          RowMatrixXf Ac(2 * m.rank, m.in), Bc(m.out, 2 * m.rank);
          Ac << A, A0;
          Bc << B, -B0;
          c.module.rank = 2 * m.rank;
          c.module.A = as_vector(Ac);
          c.module.B = as_vector(Bc);
          c.dropped = 0;
        } else {
          // s folded into the factors (√s each), written with alpha = rank (scaling 1) as PEFT's
          // convert_to_lora does.
          const float root = static_cast<float>(std::sqrt(s));
          c.module.rank = keep;
          c.module.A = as_vector(td.A * root);
          c.module.B = as_vector(td.B * root);
          c.dropped = s * s * td.dropped_energy;
        }
        c.row = converted_row(m.module + ".weight", m, c, t0);
        c.row["scaling_in"] = round_sig(s);
        done[i] = std::move(c);
        return [] {};
      },
      o.common.exec);

  LoraConfig cfg = converted_config(trained.config, o);
  if (!o.rank) {
    const double factor = cfg.use_rslora ? std::sqrt(2.0) : 2.0;
    cfg.r *= 2;
    cfg.lora_alpha *= factor;
    for (auto& [k, v] : cfg.rank_pattern)
      v *= 2;
    for (auto& [k, v] : cfg.alpha_pattern)
      v *= factor;
  } else {
    set_uniform_rank(cfg, *o.rank, done);
  }
  Report report("merge", o.common.argv);
  report.add_input("init_adapter", o.init_adapter.string(),
                   fingerprint(Checkpoint::open(init.weights)));
  report.add_input("trained_adapter", o.trained_adapter.string(),
                   fingerprint(Checkpoint::open(trained.weights)));
  report.settings() = {{"mode", "to-lora"},
                       {"format_in", trained_format},
                       {"rank", o.rank ? Json(*o.rank) : Json("exact (2r)")},
                       {"adapter_dtype", std::string(dtype_name(o.adapter_dtype))},
                       {"svd", "QR of [B | -B0] and [A ; A0]^T, SVD of the small core (f64)"}};
  return commit_converted_lora(done, cfg, report, out, o, start);
}

Json converted_row(const std::string& base_tensor, const LoraModule& from, const ConvertedModule& c,
                   Clock::time_point t0) {
  return {{"name", base_tensor},
          {"module", from.module},
          {"shape", {from.out, from.in}},
          {"rank_in", from.rank},
          {"rank_out", c.module.rank},
          {"delta_fro", round_sig(std::sqrt(c.total))},
          {"dropped_energy", round_sig(c.dropped, 8)},
          {"dropped_fraction", c.total > 0 ? round_sig(c.dropped / c.total, 8) : 0.0},
          {"seconds", round_sig(seconds_since(t0), 4)}};
}

LoraConfig converted_config(const LoraConfig& from, const ToLoraOptions& o) {
  LoraConfig cfg = from;
  cfg.extra.erase("init_lora_weights");
  cfg.extra.erase("base_model_name_or_path");
  if (!o.base_model_name_or_path.empty()) cfg.base_model_name_or_path = o.base_model_name_or_path;
  return cfg;
}

void set_uniform_rank(LoraConfig& cfg, int rank, const std::vector<ConvertedModule>& done) {
  cfg.r = rank;
  cfg.lora_alpha = rank;
  cfg.use_rslora = false;
  cfg.rank_pattern.clear();
  cfg.alpha_pattern.clear();
  for (const auto& c : done)
    if (c.module.rank != rank) {
      cfg.rank_pattern.emplace_back(c.module.module, c.module.rank);
      cfg.alpha_pattern.emplace_back(c.module.module, c.module.rank);
    }
}

Json commit_converted_lora(std::vector<ConvertedModule>& done, const LoraConfig& cfg,
                           Report& report, OutputDir& out, const ToLoraOptions& o,
                           Clock::time_point start) {
  std::vector<LoraModule> modules;
  double dropped = 0, total = 0;
  std::uint64_t params = 0;
  for (auto& c : done) {
    dropped += c.dropped;
    total += c.total;
    params += c.module.A.size() + c.module.B.size();
    report.add_row(std::move(c.row));
    modules.push_back(std::move(c.module));
  }
  // The same layout as every adapter-writing command: OUT/adapter/ beside OUT/report.json.
  write_lora_adapter(out.part(kAdapterPart), cfg, modules, o.adapter_dtype);
  report.totals() = {{"modules", modules.size()},
                     {"r", cfg.r},
                     {"lora_alpha", cfg.lora_alpha},
                     {"adapter_params", params},
                     {"dropped_energy", round_sig(dropped, 8)},
                     {"total_energy", round_sig(total, 8)},
                     {"dropped_fraction", total > 0 ? round_sig(dropped / total, 8) : 0.0},
                     {"seconds", round_sig(seconds_since(start), 4)}};
  return commit_with_report(report, out, o.common);
}

std::string to_lora_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "wrote %s: %zu modules, r %d, %llu params, dropped energy %.4g (%.3g%%), %.2fs\n",
                output.c_str(), t["modules"].get<std::size_t>(), t["r"].get<int>(),
                static_cast<unsigned long long>(t["adapter_params"].get<std::uint64_t>()),
                t["dropped_energy"].get<double>(), 100.0 * t["dropped_fraction"].get<double>(),
                t["seconds"].get<double>());
  return buf;
}

}  // namespace ckpt
