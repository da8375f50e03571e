#include "ckptkit/commands/mpo_init/mpo_init.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/decompose/mpo.hpp"
#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

/// One weight to decompose, validated before any output exists.
struct Target {
  const CheckpointTensor* tensor = nullptr;
  std::string module;
  bool transposed = false;          // stored [in, out] (Conv1D): the MPO is of the transpose
  std::int64_t rows = 0, cols = 0;  // [out, in]
  MpoShape shape;
  MpoTruncation trunc;
  std::int64_t budget = 0;  // --params / --params-like-lora budget (0: none)
};

struct Done {
  MpoModule module;
  Json row;
  double err_sq = 0, norm_sq = 0, q_err_sq = 0;
};

/// The factorization of one side, or a usage error naming the tensor with what to do instead.
std::vector<std::int64_t> auto_factors(std::int64_t n, int cores, const std::string& side,
                                       const std::string& file, const std::string& tensor,
                                       const std::string& module) {
  if (auto f = balanced_factorization(n, cores)) return *f;
  int primes = 0;
  std::int64_t m = n;
  for (std::int64_t p = 2; p * p <= m; ++p)
    while (m % p == 0) {
      m /= p;
      ++primes;
    }
  if (m > 1) ++primes;
  std::string pad = std::to_string(n);
  for (int k = 1; k < cores; ++k)
    pad += ",1";
  fail(ErrorKind::Usage,
       located(file, tensor,
               "the " + std::to_string(n) + " " + side + " cannot be split into " +
                   std::to_string(cores) + " cores (" +
                   (primes == 1 ? std::to_string(n) + " is prime"
                                : "only " + std::to_string(primes) + " prime factors") +
                   "); use --cores " + std::to_string(std::max(primes, 1)) +
                   ", give --row-shape/--col-shape explicitly (factors of 1 are allowed, e.g. " +
                   pad + "), or leave it out with --exclude " + module));
}

void validate_options(const MpoInitOptions& o) {
  const bool explicit_shape = !o.row_shape.empty() || !o.col_shape.empty();
  if (explicit_shape && (o.row_shape.empty() || o.col_shape.empty()))
    fail(ErrorKind::Usage, "--row-shape and --col-shape go together");
  if (explicit_shape && o.row_shape.size() != o.col_shape.size())
    fail(ErrorKind::Usage, "--row-shape has " + std::to_string(o.row_shape.size()) +
                               " factors but --col-shape " + std::to_string(o.col_shape.size()) +
                               ": both need one per core");
  for (auto f : o.row_shape)
    if (f < 1) fail(ErrorKind::Usage, "--row-shape factors must be >= 1");
  for (auto f : o.col_shape)
    if (f < 1) fail(ErrorKind::Usage, "--col-shape factors must be >= 1");
  if (!explicit_shape && o.cores < 1) fail(ErrorKind::Usage, "--cores must be at least 1");
  if (o.bond && *o.bond < 1)
    fail(ErrorKind::Usage,
         "--bond must be at least 1 (bond " + std::to_string(*o.bond) +
             " would drop the whole matrix); try --bond 8, or --params-like-lora 8");
  if (o.tolerance && !(*o.tolerance > 0 && *o.tolerance < 1))
    fail(ErrorKind::Usage, "--tolerance is a relative Frobenius error in (0, 1), e.g. 0.1");
  if (o.params && *o.params < 1) fail(ErrorKind::Usage, "--params must be positive");
  if (o.params_like_lora && *o.params_like_lora < 1)
    fail(ErrorKind::Usage, "--params-like-lora must be at least 1");
  if (o.params && o.params_like_lora)
    fail(ErrorKind::Usage, "--params and --params-like-lora exclude each other");
  if ((o.params || o.params_like_lora) && (o.bond || o.tolerance))
    fail(ErrorKind::Usage, "a parameter budget sets the bond cap itself: drop --bond/--tolerance");
  mpo_trainable_cores(explicit_shape ? o.row_shape.size() : static_cast<std::size_t>(o.cores),
                      o.trainable);
}

Json discarded_json(const Mpo& m) {
  Json d = Json::array();
  for (double x : m.discarded)
    d.push_back(round_sig(m.norm > 0 ? x / m.norm : 0.0));
  return d;
}

}  // namespace

Json mpo_init_totals(const Json& report, const std::vector<std::string>& residual_files) {
  const Json& rows = report["tensors"];
  std::int64_t adapter_params = 0, dense_params = 0;
  for (const auto& r : rows) {
    adapter_params += r["params"].get<std::int64_t>();
    dense_params += r["dense_params"].get<std::int64_t>();
  }
  const double err_sq = sum_of_row_sums(rows, "err_sq");
  const double norm_sq = sum_of_row_sums(rows, "norm_sq");
  const double q_err_sq = sum_of_row_sums(rows, "q_err_sq");
  const bool quantized = report["settings"]["quantize_residual"].is_string();
  return {{"targets", rows.size()},
          {"adapter_params", adapter_params},
          {"dense_params", dense_params},
          {"params_vs_dense",
           round_sig(static_cast<double>(adapter_params) / static_cast<double>(dense_params))},
          {"rel_error", round_sig(norm_sq > 0 ? std::sqrt(err_sq / norm_sq) : 0.0)},
          {quantized ? "qdota_rel_error" : "stored_rel_error",
           round_sig(norm_sq > 0 ? std::sqrt(q_err_sq / norm_sq) : 0.0)},
          {"residual_files", residual_files}};
}

/// Each target's factorization (row and column shapes) and truncation (bond cap, tolerance, or a
/// parameter budget turned into a cap), checked before any output exists.
std::vector<Target> plan_targets(const MpoInitOptions& o, const Checkpoint& in,
                                 const TargetSelection& selection) {
  std::vector<Target> targets;
  for (const auto& w : selection.targets) {
    const CheckpointTensor& t = *w.tensor;
    const std::string file = in.file_of(t);
    Target tg;
    tg.tensor = &t;
    tg.module = w.adapter_module;
    tg.transposed = w.conv1d;
    tg.rows = tg.transposed ? t.info.shape[1] : t.info.shape[0];
    tg.cols = tg.transposed ? t.info.shape[0] : t.info.shape[1];
    if (!o.row_shape.empty()) {
      tg.shape = {o.row_shape, o.col_shape};
      if (const auto p = mpo_shape_problem(tg.shape, tg.rows, tg.cols); !p.empty())
        fail(ErrorKind::Usage, located(file, t.info.name,
                                       p + " of its [out, in] = [" + std::to_string(tg.rows) +
                                           ", " + std::to_string(tg.cols) +
                                           "]; restrict --target to matrices of this shape, "
                                           "or use --cores N for an automatic factorization"));
    } else {
      tg.shape.row = auto_factors(tg.rows, o.cores, "rows", file, t.info.name, tg.module);
      tg.shape.col = auto_factors(tg.cols, o.cores, "columns", file, t.info.name, tg.module);
    }
    if (o.bond) tg.trunc.bond_cap = *o.bond;
    if (o.tolerance) tg.trunc.tolerance = *o.tolerance;
    if (o.params || o.params_like_lora) {
      tg.budget = o.params ? *o.params
                           : static_cast<std::int64_t>(*o.params_like_lora) * (tg.rows + tg.cols);
      const std::int64_t cap = mpo_cap_for_params(tg.shape, tg.budget);
      if (cap == 0)
        fail(ErrorKind::Usage,
             located(file, t.info.name,
                     "a budget of " + std::to_string(tg.budget) +
                         " parameters is below the smallest MPO of row shape [" +
                         join(tg.shape.row) + "] and column shape [" + join(tg.shape.col) +
                         "] (bond 1: " +
                         std::to_string(mpo_param_count(tg.shape, mpo_bonds_for_cap(tg.shape, 1))) +
                         " parameters); raise the budget or use fewer cores"));
      tg.trunc.bond_cap = cap;
    }
    targets.push_back(tg);
  }
  return targets;
}

/// The per-tensor work: TT-SVD of W into cores, the residual W − MPO (NF4-quantized for QDoTA)
/// into `outputs`, and the row of the report.
struct TensorDecomposer {
  const MpoInitOptions& o;
  const Checkpoint& in;
  std::optional<QuantFormat> residual_format;  // QDoTA

  Done operator()(const Target& tg, const TensorView& view,
                  std::vector<OwnedTensor>& outputs) const;
};

Done TensorDecomposer::operator()(const Target& tg, const TensorView& view,
                                  std::vector<OwnedTensor>& outputs) const {
  const auto t0 = Clock::now();
  const auto& info = tg.tensor->info;
  std::vector<float> w = to_f32(view);
  check_finite(w, in.file_of(*tg.tensor), info.name);
  if (tg.transposed) w = transpose(w, info.shape[0], info.shape[1]);
  Mpo m = mpo_decompose(w.data(), tg.rows, tg.cols, tg.shape, tg.trunc);
  const double decompose_seconds = seconds_since(t0);
  // The residual comes from the cores as stored, so residual + MPO(cores on disk) = W.
  for (auto& c : m.cores)
    round_to(o.adapter_dtype, c.data);
  const std::vector<float> delta = mpo_contract(tg.shape, m.cores);
  std::vector<float> res(w.size());
  for (std::size_t i = 0; i < w.size(); ++i)
    res[i] = w[i] - delta[i];

  Done d;
  d.norm_sq = sum_sq(w);
  d.err_sq = sum_sq(res);
  const double norm = std::sqrt(d.norm_sq);
  // What the residual becomes on disk, in the math orientation: the cast, or NF4's
  // dequantization.
  std::vector<float> stored_res = res;
  std::vector<float> stored_orient = tg.transposed ? transpose(res, tg.rows, tg.cols) : res;
  const bool quantized = residual_format.has_value();
  if (quantized) {
    // QDoTA: the residual in the format asked for, bitsandbytes' layout where bnb can store it
    // (the same bytes `ckptkit quantize` writes).
    QuantizedWeight q = quantize_weight(*residual_format, info, stored_orient, true);
    outputs = std::move(q.tensors);
    stored_res =
        tg.transposed ? transpose(q.dequantized, tg.cols, tg.rows) : std::move(q.dequantized);
  } else {
    outputs.push_back(make_tensor(info.name, info.dtype, info.shape, stored_orient));
    round_to(info.dtype, stored_res);
  }
  double max_abs = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double e = static_cast<double>(stored_res[i]) + delta[i] - w[i];
    d.q_err_sq += e * e;
    max_abs = std::max(max_abs, std::fabs(e));
  }
  double bound_sq = 0;
  for (double x : m.discarded)
    bound_sq += x * x;
  const std::int64_t params = m.params();
  const std::int64_t dense = tg.rows * tg.cols;
  const double rel = norm > 0 ? std::sqrt(d.err_sq) / norm : 0.0;
  std::vector<std::int64_t> full{1};
  full.insert(full.end(), m.full_bonds.begin(), m.full_bonds.end());
  full.push_back(1);
  d.row = {{"name", info.name},
           {"module", tg.module},
           {"shape", info.shape},
           {"dtype", std::string(dtype_name(info.dtype))},
           {"transposed", tg.transposed},
           {"row_shape", tg.shape.row},
           {"col_shape", tg.shape.col},
           {"bonds", m.bonds()},
           {"full_bonds", full},
           {"bond_cap", tg.trunc.bond_cap > 0 ? Json(tg.trunc.bond_cap) : Json(nullptr)},
           {"params_budget", tg.budget > 0 ? Json(tg.budget) : Json(nullptr)},
           {"params", params},
           {"dense_params", dense},
           {"params_vs_dense", round_sig(static_cast<double>(params) / static_cast<double>(dense))},
           {"lora_rank_equal_params",
            round_sig(static_cast<double>(params) / static_cast<double>(tg.rows + tg.cols), 4)},
           {"rel_error", round_sig(rel)},
           {"energy_captured", round_sig(1.0 - rel * rel)},
           {"discarded_rel_per_bond", discarded_json(m)},
           {"tt_bound_rel", round_sig(norm > 0 ? std::sqrt(bound_sq) / norm : 0.0)},
           {quantized ? "qdota_rel_error" : "stored_rel_error",
            round_sig(norm > 0 ? std::sqrt(d.q_err_sq) / norm : 0.0)},
           {"max_abs_error", round_sig(max_abs)},
           {"decompose_seconds", round_sig(decompose_seconds, 4)},
           {"seconds", round_sig(seconds_since(t0), 4)}};
  d.module = {tg.module,
              tg.rows,
              tg.cols,
              tg.shape,
              std::move(m.cores),
              mpo_trainable_cores(tg.shape.cores(), o.trainable)};
  return d;
}

Json run_mpo_init(const MpoInitOptions& o) {
  const auto start = Clock::now();
  validate_options(o);
  const bool quantized = !o.quantize_residual.empty();
  std::optional<QuantFormat> residual_format;
  if (quantized) {
    QuantFormatRequest r;
    r.scheme = o.quantize_residual;
    r.block = o.quant_block;
    residual_format = resolve_quant_format(r, "--quantize-residual");
  }

  const Checkpoint in = Checkpoint::open(o.input);
  const TargetSelection selection = select_targets(in, o.common.targets, {"mpo-init"});

  const std::vector<Target> targets = plan_targets(o, in, selection);

  OutputDir out(o.common.output, o.common.force, {o.input}, o.common.report_path);
  const fs::path adapter_dir = out.part(kAdapterPart);
  const fs::path residual_dir = out.part(kResidualPart);

  const TensorDecomposer work{o, in, residual_format};

  std::vector<MpoModule> modules;
  std::vector<Json> rows;
  auto collect = [&](Done& d) {
    d.row["sums"] = {{"err_sq", d.err_sq}, {"norm_sq", d.norm_sq}, {"q_err_sq", d.q_err_sq}};
    modules.push_back(std::move(d.module));
    rows.push_back(std::move(d.row));
  };

  const StreamJob job = targets_job(
      in, targets,
      [&](const Target& tg) {
        const auto& t = tg.tensor->info;
        return std::pair{quantized ? quant_format_specs(*residual_format, t)
                                   : std::vector<TensorSpec>{{t.name, t.dtype, t.shape}},
                         static_cast<std::uint64_t>(tg.rows * tg.cols) * sizeof(float) * 7};
      },
      work, collect);
  WriterOptions wo = writer_options(o.common, in.metadata());
  wo.write_metadata = in.shards().front().header.has_metadata;
  const auto residual_files = stream_checkpoint(job, residual_dir, wo, o.common.exec, "mpo-init");
  // config.json says how the residual is quantized (QDoTA), as `ckptkit quantize` does.
  std::function<void(nlohmann::json&)> describe;
  if (quantized)
    describe = [&](nlohmann::json& c) {
      describe_quant_format(c, *residual_format, "bfloat16", selection.left_alone);
    };
  copy_model_files(in, residual_dir, describe);

  MpoAdapter adapter;
  adapter.base_model_name_or_path = adapter_base_model(o.common, in, o.input);
  adapter.trainable = o.trainable;
  adapter.residual_quantization = o.quantize_residual;
  adapter.fan_in_fan_out = selection.fan_in_fan_out;
  adapter.modules = std::move(modules);
  write_mpo_adapter(adapter_dir, adapter, o.adapter_dtype);

  Report report("mpo-init", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  Json factorization = Json::object();
  if (!o.row_shape.empty())
    factorization = {{"row_shape", o.row_shape}, {"col_shape", o.col_shape}};
  else
    factorization = {{"cores", o.cores}, {"rule", "balanced"}};
  report.settings() = {
      {"factorization", factorization},
      {"bond", o.bond ? Json(*o.bond) : Json(nullptr)},
      {"tolerance", o.tolerance ? Json(*o.tolerance) : Json(nullptr)},
      {"tolerance_per_bond", "tolerance * ||W||_F / sqrt(N - 1)"},
      {"params", o.params ? Json(*o.params) : Json(nullptr)},
      {"params_like_lora", o.params_like_lora ? Json(*o.params_like_lora) : Json(nullptr)},
      {"trainable", o.trainable},
      {"quantize_residual", quantized ? Json(o.quantize_residual) : Json(nullptr)},
      {"quant_block", quantized && residual_format->layout != QuantLayout::BnbInt8
                          ? Json(residual_format->spec.block)
                          : Json(nullptr)},
      {"residual_quantization", quantized ? quant_format_json(*residual_format) : Json(nullptr)},
      {"svd", "Eigen BDCSVD (f32), left-to-right TT-SVD truncating during the sweep"},
      {"adapter_dtype", std::string(dtype_name(o.adapter_dtype))},
      {"adapter_format_version", kMpoFormatVersion},
      {"fan_in_fan_out", selection.fan_in_fan_out}};
  // What the adapter names assume (family, prefix, layout): a warning for unknown families.
  report.settings()["module_naming"] = selection.naming.assumption;
  for (auto& r : rows)
    report.add_row(r);
  report.totals() = mpo_init_totals(report.to_json(), residual_files);
  report.totals()["seconds"] = round_sig(seconds_since(start), 4);
  return commit_with_report(report, out, o.common);
}

std::string mpo_init_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "wrote %s: %zu matrices as MPO adapters, %lld params (%.4g of dense), relative "
                "error %.4g, %.2fs\n",
                output.c_str(), t["targets"].get<std::size_t>(),
                static_cast<long long>(t["adapter_params"].get<std::int64_t>()),
                t["params_vs_dense"].get<double>(), t["rel_error"].get<double>(),
                t["seconds"].get<double>());
  std::string out = buf;
  const auto& s = report["settings"];
  if (s["bond"].is_null() && s["tolerance"].is_null() && s["params"].is_null() &&
      s["params_like_lora"].is_null())
    out +=
        "warning: no size given, so every MPO holds its matrix exactly (as many parameters as "
        "the dense weights) and the residual is ~0; for a DoTA adapter give a size: "
        "--params-like-lora R, --bond D, --tolerance EPS or --params N\n";
  return out;
}

}  // namespace ckpt
