#include "ckptkit/commands/svd_init/svd_init.hpp"

#include <time.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/shard.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

/// One weight to decompose.
struct Target {
  const CheckpointTensor* tensor = nullptr;
  const CheckpointTensor* base = nullptr;  // extraction
  std::string module;
  bool transposed = false;  // stored [in, out] (Conv1D) or an embedding: math on the transpose
  bool embedding = false;
  std::int64_t out = 0, in = 0;  // math orientation
};

/// What one finished tensor hands to the in-order sink.
struct Done {
  LoraModule lora;
  SorsaModule sorsa;
  Json row;
};

/// Reusable f32 buffers for the per-tensor copies of W: a fresh 180 MB allocation per 11008×4096
/// tensor costs ~45k page faults and a zero fill, more CPU than the decode itself. At most one
/// buffer per task in flight exists, so peak memory is what it was with fresh allocations.
class ScratchPool {
 public:
  std::vector<float> take(std::size_t n) {
    std::vector<float> v;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        // The largest free buffer: fewest regrowths.
        auto it = std::max_element(free_.begin(), free_.end(), [](const auto& x, const auto& y) {
          return x.capacity() < y.capacity();
        });
        v = std::move(*it);
        free_.erase(it);
      }
    }
    if (v.capacity() < n) v = std::vector<float>();  // drop it first: never two big ones at once
    v.resize(n);  // no fill when the buffer was already this large: decode overwrites it
    return v;
  }
  void give(std::vector<float>&& v) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(v));
  }

 private:
  std::mutex mutex_;
  std::vector<std::vector<float>> free_;
};

/// Thread CPU seconds (phase timings in the report; not inflated by other processes).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::string method_label(const SvdInitOptions& o) {
  return o.base ? "extract" : method_name(o.method);
}

Json opt_num(const std::optional<double>& v) {
  return v ? Json(round_sig(*v)) : Json(nullptr);
}

}  // namespace

Json svd_init_totals(const Json& report, const std::vector<std::string>& residual_files) {
  const Json& rows = report["tensors"];
  double max_abs = 0;
  bool all_met = true, any_target = false;  // energy_target_met is null without --energy
  for (const auto& r : rows) {
    max_abs = std::max(max_abs, r["max_abs_error"].get<double>());
    const Json met = r.value("energy_target_met", Json());
    if (met.is_boolean()) any_target = true, all_met = all_met && met.get<bool>();
  }
  const double flops = sum_of_row_sums(rows, "gemm_flops");
  const double gemm_seconds = sum_of_row_sums(rows, "gemm_seconds");
  return {{"targets", rows.size()},
          {"adapter_params", sum_of_counts(rows, "adapter_params")},
          {"max_abs_error", max_abs},
          {"energy_target_met", any_target ? Json(all_met) : Json(nullptr)},
          {"residual_files", residual_files},
          {"randomized_gflops",
           gemm_seconds > 0 ? Json(round_sig(flops / gemm_seconds / 1e9, 4)) : Json(nullptr)}};
}

/// The per-tensor work: decode (and subtract the base), decompose, build the residual in the
/// input dtype, measure. `residual` is null for extraction.
struct TensorDecomposer {
  const SvdInitOptions& o;
  SvdInitMethod method;
  const Checkpoint& in;
  const std::optional<Checkpoint>& base;
  const SvdInitParams& params;
  ScratchPool& scratch;

  Done operator()(const Target& tg, const TensorView& view, OwnedTensor* residual) const;
};

Done TensorDecomposer::operator()(const Target& tg, const TensorView& view,
                                  OwnedTensor* residual) const {
  const auto t0 = Clock::now();
  const auto& info = tg.tensor->info;
  const std::string file = in.file_of(*tg.tensor);
  double cpu = thread_cpu_seconds();
  auto lap = [&cpu] {
    const double now = thread_cpu_seconds(), d = now - cpu;
    cpu = now;
    return d;
  };
  std::vector<float> w = scratch.take(static_cast<std::size_t>(view.numel()));
  // Decode, NaN/Inf check and ‖W‖²_F in one pass over cache-sized chunks (the same fixed
  // chunks and f64 sum order for any thread count).
  SvdInitParams tensor_params = params;
  {
    constexpr std::size_t kChunk = 16384;
    const std::size_t size = dtype_size(view.dtype);
    double norm_sq = 0;
    for (std::size_t c0 = 0; c0 < w.size(); c0 += kChunk) {
      const std::size_t len = std::min(kChunk, w.size() - c0);
      const std::span<float> chunk(w.data() + c0, len);
      decode_to_f32(view.dtype, view.bytes.subspan(c0 * size, len * size), chunk);
      if (!all_finite(chunk))  // locate the first bad element (index in the whole tensor)
        check_finite(std::span<const float>(w.data(), c0 + len), file, info.name);
      norm_sq += frobenius_sq(chunk);
    }
    if (!tg.base) tensor_params.norm_sq = norm_sq;  // extraction: the norm of ΔW, not of W
  }
  if (tg.base) {
    std::vector<float> b = to_f32(base->view(*tg.base));
    check_finite(b, base->file_of(*tg.base), info.name);
    for (std::size_t i = 0; i < w.size(); ++i)
      w[i] -= b[i];
    base->release(*tg.base);
  }
  if (tg.transposed) w = transpose(w, info.shape[0], info.shape[1]);
  const double decode_cpu = lap();
  SvdInitResult r = svd_init_matrix(w, tg.out, tg.in, tensor_params, info.name);
  const double svd_cpu = lap();
  // The residual is computed from the factors as stored, so residual + s·B·A = W holds for
  // the files on disk (with the default f32 adapter this is exactly PEFT's order).
  round_to(o.adapter_dtype, r.A);
  round_to(o.adapter_dtype, r.B);
  round_to(o.adapter_dtype, r.S);
  // A factor that overflowed (in the SVD, or in a bf16/f16 --adapter-dtype) must not be written.
  for (const auto* factor : {&r.A, &r.B, &r.S})
    check_computed_finite(
        *factor, file, info.name,
        "the adapter factor (stored as " + std::string(dtype_name(o.adapter_dtype)) + ")");

  // W becomes W_res in place, panel by panel, and each panel is cast straight into the output
  // bytes while in cache, measuring |cast(W_res) + s·B·A − W| = |cast(W_res) − W_res| (W_res =
  // W − s·B·A in f32; that subtraction adds at most 2^-24·|W_res|) in ulps of W (decoded from
  // the input) and of the stored entry. Peak memory: one f32 copy of W plus the output.
  Done done;
  ResidualOutput dst;
  if (residual) {
    residual->name = info.name;
    residual->dtype = info.dtype;
    residual->shape = info.shape;
    residual->bytes.resize(w.size() * dtype_size(info.dtype));
    dst = {view.dtype, view.bytes, info.dtype, residual->bytes};
  }
  const ResidualStats st =
      residual_in_place(w, r, tg.out, tg.in, tg.transposed, dst, params.parallel);
  const double residual_cpu = lap();
  const double err_sq = st.err_sq, max_abs = st.max_abs;
  const std::size_t numel = w.size();
  scratch.give(std::move(w));
  const double norm = std::sqrt(r.norm_sq);
  const double seconds = seconds_since(t0);
  done.row = {{"name", info.name},
              {"module", tg.module},
              {"shape", info.shape},
              {"dtype", std::string(dtype_name(info.dtype))},
              {"transposed", tg.transposed},
              {"rank", r.rank},
              {"alpha", r.alpha},
              {"scaling", round_sig(r.scaling)},
              {"energy_captured", r.norm_sq > 0 ? round_sig(r.captured_sq / r.norm_sq) : 1.0},
              {"energy_target_met", o.energy ? Json(r.energy_met) : Json(nullptr)},
              {"sigma_1", round_sig(r.sigma_1)},
              {"sigma_r", round_sig(r.sigma_r)},
              {"sigma_r_plus_1", opt_num(r.sigma_r1)},
              {"rel_error", norm > 0 ? round_sig(std::sqrt(err_sq) / norm) : 0.0},
              {"optimal_rel_error", opt_num(r.optimal_rel_err)},
              {"posterior_rel_error", opt_num(r.posterior_rel_err)},
              {"max_abs_error", round_sig(max_abs)},
              {"seconds", round_sig(seconds, 4)}};
  if (residual) {
    done.row["max_err_ulps"] = round_sig(st.max_ulps, 4);
    done.row["within_one_ulp"] =
        round_sig(static_cast<double>(st.within_one_ulp) / static_cast<double>(numel), 8);
    done.row["max_err_residual_ulps"] = round_sig(st.max_res_ulps, 4);
  }
  // CPU seconds of this thread per phase (work that other threads did for this tensor's split
  // products is not included: exact with --threads 1).
  done.row["phase_cpu_seconds"] = {{"decode", round_sig(decode_cpu, 3)},
                                   {"svd", round_sig(svd_cpu, 3)},
                                   {"residual", round_sig(residual_cpu, 3)}};
  if (r.gemm_seconds > 0)
    done.row["gemm_gflops"] = round_sig(r.gemm_flops / r.gemm_seconds / 1e9, 4);
  done.row["adapter_params"] =
      r.A.size() + r.B.size() + (method == SvdInitMethod::Sorsa ? r.S.size() : std::size_t{0});
  done.row["sums"] = {{"gemm_flops", r.gemm_flops}, {"gemm_seconds", r.gemm_seconds}};
  if (method == SvdInitMethod::Sorsa) {
    done.sorsa = {tg.module, r.rank, tg.in, tg.out, std::move(r.A), std::move(r.S), std::move(r.B)};
  } else {
    done.lora.module = tg.module;
    done.lora.embedding = tg.embedding;
    done.lora.rank = r.rank;
    done.lora.in = tg.in;
    done.lora.out = tg.out;
    done.lora.A = std::move(r.A);
    done.lora.B = std::move(r.B);
  }
  return done;
}

/// Checks the option combinations and resolves --svd auto: randomized wherever it answers the
/// question (top-r triplets); exact for the smallest triplets (milora) and for --energy, which
/// needs the whole spectrum.
SvdAlgorithm resolve_algorithm(const SvdInitOptions& o, SvdInitMethod method) {
  if (o.base && o.method != SvdInitMethod::Pissa)
    fail(ErrorKind::Usage,
         "--base (extraction) writes a plain LoRA: --method must be pissa (the default)");
  if (o.energy && !(*o.energy > 0.0 && *o.energy <= 1.0))
    fail(ErrorKind::Usage, "--energy must be in (0, 1]");
  if (o.energy && o.alpha)
    fail(ErrorKind::Usage, "--alpha cannot be combined with --energy (alpha = per-layer rank)");
  if (o.energy && method == SvdInitMethod::Milora)
    fail(ErrorKind::Usage, "--energy is not defined for milora");
  if (!o.energy && o.rank < 1) fail(ErrorKind::Usage, "--rank must be at least 1");
  if (o.alpha && !(*o.alpha > 0)) fail(ErrorKind::Usage, "--alpha must be positive");
  if (o.niter < 0 || o.oversample < 0)
    fail(ErrorKind::Usage, "--niter and --oversample must be >= 0");
  const SvdAlgorithm algo =
      o.svd ? *o.svd
            : (method == SvdInitMethod::Milora || o.energy ? SvdAlgorithm::Exact
                                                           : SvdAlgorithm::Randomized);
  if (algo == SvdAlgorithm::Randomized && method == SvdInitMethod::Milora)
    fail(ErrorKind::Usage,
         "milora takes the smallest singular triplets, which only --svd exact finds");
  return algo;
}

/// The targets with their math orientation, each checked against the options (rank) and, for
/// extraction, against the base, before any output exists.
std::vector<Target> validate_targets(const SvdInitOptions& o, const Checkpoint& in,
                                     const std::optional<Checkpoint>& base,
                                     const TargetSelection& selection) {
  const bool extract = base.has_value();
  std::vector<Target> targets;
  for (const auto& w : selection.targets) {
    const CheckpointTensor& t = *w.tensor;
    Target tg;
    tg.tensor = &t;
    tg.module = w.adapter_module;
    tg.embedding = w.embedding;
    // PEFT: Conv1D weights are [in, out]; embeddings' ΔW is (B·A)ᵀ. Both: decompose the transpose.
    tg.transposed = w.conv1d != tg.embedding;
    tg.out = tg.transposed ? t.info.shape[1] : t.info.shape[0];
    tg.in = tg.transposed ? t.info.shape[0] : t.info.shape[1];
    const std::int64_t kmax = std::min(tg.out, tg.in);
    if (!o.energy && o.rank >= kmax)
      fail(ErrorKind::Usage,
           located(in.file_of(t), t.info.name,
                   "rank " + std::to_string(o.rank) + " >= min(out, in) = " + std::to_string(kmax) +
                       " of shape " + shape_str(t.info.shape)));
    if (kmax < 2)
      fail(ErrorKind::Usage, located(in.file_of(t), t.info.name,
                                     "shape " + shape_str(t.info.shape) + " has no rank to split"));
    if (extract) {
      tg.base = base->find(t.info.name);
      if (!tg.base)
        fail(ErrorKind::Usage,
             located(base->path().string(), t.info.name, "missing in the base checkpoint"));
      if (tg.base->info.shape != t.info.shape)
        fail(ErrorKind::Usage,
             located(base->file_of(*tg.base), t.info.name,
                     "shape " + shape_str(tg.base->info.shape) + " in the base but " +
                         shape_str(t.info.shape) + " in the fine-tuned checkpoint"));
      if (!is_float(tg.base->info.dtype))
        fail(ErrorKind::Unsupported,
             located(base->file_of(*tg.base), t.info.name, "not a float tensor in the base"));
    }
    targets.push_back(tg);
  }
  if (extract)  // a target weight the fine-tune lacks is a mismatch too
    for (const auto& w :
         select_targets(*base, o.common.targets, {"svd-init", false, true, false}).targets)
      if (!in.find(w.tensor->info.name))
        fail(ErrorKind::Usage, located(in.path().string(), w.tensor->info.name,
                                       "in the base checkpoint but missing in the fine-tuned one"));

  return targets;
}

Json run_svd_init(const SvdInitOptions& o) {
  const auto start = Clock::now();
  const bool extract = o.base.has_value();
  const SvdInitMethod method = extract ? SvdInitMethod::Extract : o.method;
  const SvdAlgorithm algo = resolve_algorithm(o, method);

  const Checkpoint in = Checkpoint::open(o.input);
  std::optional<Checkpoint> base;
  if (extract) base = Checkpoint::open(*o.base);
  const TargetSelection selection = select_targets(in, o.common.targets, {"svd-init"});

  std::vector<Target> targets = validate_targets(o, in, base, selection);  // --shard keeps a share

  std::vector<fs::path> inputs{o.input};
  if (o.base) inputs.push_back(*o.base);
  OutputDir out(o.common.output, o.common.force, inputs, o.common.report_path);
  const fs::path adapter_dir = out.part(kAdapterPart);

  SvdInitParams params;
  params.method = method;
  params.algorithm = algo;
  params.rank = o.rank;
  params.alpha = o.alpha;
  params.rslora = o.rslora;
  params.energy = o.energy;
  params.max_rank = o.max_rank;
  params.oversample = o.oversample;
  params.niter = o.niter;
  params.seed = o.common.seed;
  params.parallel = parallel_chunks;

  ScratchPool scratch;
  const TensorDecomposer work{o, method, in, base, params, scratch};

  // Collected in checkpoint order by the serial sink.
  std::vector<LoraModule> lora_modules;
  std::vector<SorsaModule> sorsa_modules;
  std::vector<Json> rows;
  auto collect = [&](Done& d) {
    if (method == SvdInitMethod::Sorsa)
      sorsa_modules.push_back(std::move(d.sorsa));
    else
      lora_modules.push_back(std::move(d.lora));
    rows.push_back(std::move(d.row));
  };
  auto working_set = [algo](const Target& tg) -> std::uint64_t {
    // f32 copy of W (and of the base) + the cast residual + SVD temporaries (exact: ~2 more copies)
    return static_cast<std::uint64_t>(tg.out * tg.in) * sizeof(float) *
           (algo == SvdAlgorithm::Exact ? 5 : 3);
  };

  std::vector<std::string> residual_files;
  if (!extract) {
    const fs::path residual_dir = out.part(kResidualPart);
    const StreamJob job = targets_job(
        in, targets,
        [&](const Target& tg) {
          const auto& t = tg.tensor->info;
          return std::pair{std::vector<TensorSpec>{{t.name, t.dtype, t.shape}}, working_set(tg)};
        },
        [&](const Target& tg, const TensorView& v, std::vector<OwnedTensor>& outputs) {
          outputs.resize(1);
          return work(tg, v, &outputs[0]);
        },
        collect);
    WriterOptions wo = writer_options(o.common, in.metadata());
    wo.write_metadata = in.shards().front().header.has_metadata;
    residual_files = stream_checkpoint(job, residual_dir, wo, o.common.exec, "svd-init");
    copy_files(in.extra_files(), residual_dir);
  } else {
    // No residual checkpoint to stream: --shard keeps this part's share of the targets here.
    keep_my_shard(o.common.exec.shard, out.path(), in, targets,
                  [](const Target& t) { return t.tensor; });
    run_ordered(
        targets.size(), [&](std::size_t i) { return working_set(targets[i]); },
        [&](std::size_t i) -> Commit {
          const Target& tg = targets[i];
          std::shared_ptr<Done> d;
          try {
            d = std::make_shared<Done>(work(tg, in.view(*tg.tensor), nullptr));
          } catch (const Error& e) {
            const std::string msg = e.what();
            if (msg.find(tg.tensor->info.name) != std::string::npos) throw;
            throw Error(e.kind(), located(in.file_of(*tg.tensor), tg.tensor->info.name, msg));
          }
          in.release(*tg.tensor);
          return [d, &collect] { collect(*d); };
        },
        o.common.exec);
  }

  // Adapter config: one r / lora_alpha, per-layer ranks as rank_pattern / alpha_pattern with
  // alpha = rank there (s = 1, as mergekit and PEFT's convert_to_lora write them).
  LoraConfig cfg;
  std::vector<std::string> adapted;
  std::vector<int> ranks;
  for (const auto& r : rows) {
    adapted.push_back(r["module"].get<std::string>());
    ranks.push_back(r["rank"].get<int>());
  }
  // A --shard part may hold no target at all (more shards than targets).
  cfg.r = o.energy && !ranks.empty() ? *std::max_element(ranks.begin(), ranks.end()) : o.rank;
  cfg.lora_alpha = o.energy ? cfg.r : o.alpha.value_or(o.rank);
  cfg.use_rslora = o.rslora;
  cfg.fan_in_fan_out = selection.fan_in_fan_out;
  cfg.target_modules = target_modules_for(adapted, selection.candidates);
  if (o.energy)
    for (std::size_t i = 0; i < adapted.size(); ++i)
      if (ranks[i] != cfg.r) {
        cfg.rank_pattern.emplace_back(adapted[i], ranks[i]);
        cfg.alpha_pattern.emplace_back(adapted[i], ranks[i]);
      }
  // Extraction: the adapter applies to the base. PiSSA/MiLoRA: to the residual written beside it,
  // but PEFT's own PiSSA keeps the original model's id here too (the residual is loaded by path).
  cfg.base_model_name_or_path =
      adapter_base_model(o.common, extract ? *base : in, extract ? *o.base : o.input);
  cfg.extra["task_type"] = std::string(task_type_name(o.common.targets.task));
  if (method == SvdInitMethod::Sorsa)
    write_sorsa_adapter(adapter_dir, cfg, sorsa_modules, o.adapter_dtype);
  else
    write_lora_adapter(adapter_dir, cfg, lora_modules, o.adapter_dtype);

  Report report("svd-init", o.common.argv);
  report.add_input(extract ? "fine-tuned" : "checkpoint", o.input.string(), fingerprint(in));
  if (base) report.add_input("base", o.base->string(), fingerprint(*base));
  report.settings() = {
      {"method", method_label(o)},
      {"svd", algo == SvdAlgorithm::Exact ? "exact" : "randomized"},
      {"exact_backend", exact_svd_backend()},
      {"rank", o.energy ? Json(nullptr) : Json(o.rank)},
      {"energy", o.energy ? Json(*o.energy) : Json(nullptr)},
      {"max_rank", o.energy && algo == SvdAlgorithm::Randomized
                       ? Json(o.max_rank > 0 ? o.max_rank : 256)
                       : Json(nullptr)},
      {"alpha", o.alpha ? Json(*o.alpha) : Json("rank")},
      {"use_rslora", o.rslora},
      {"niter", algo == SvdAlgorithm::Randomized ? Json(o.niter) : Json(nullptr)},
      {"oversample", algo == SvdAlgorithm::Randomized ? Json(o.oversample) : Json(nullptr)},
      {"seed", o.common.seed},
      {"adapter_dtype", std::string(dtype_name(o.adapter_dtype))},
      {"fan_in_fan_out", selection.fan_in_fan_out}};
  // What the adapter names assume (family, prefix, layout): a warning for unknown families.
  report.settings()["module_naming"] = selection.naming.assumption;
  for (auto& r : rows)
    report.add_row(r);
  report.totals() = svd_init_totals(report.to_json(), residual_files);
  report.totals()["seconds"] = round_sig(seconds_since(start), 4);
  const Json met = report.totals()["energy_target_met"];
  if (met.is_boolean() && !met.get<bool>())
    warn(
        "svd-init: the --energy target was not reached within the rank cap on some layers (see "
        "report.json)");
  return commit_with_report(report, out, o.common);
}

std::string svd_init_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "wrote %s: %zu adapted tensors, %llu adapter params, max |err| %.3g, %.2fs\n",
                output.c_str(), static_cast<std::size_t>(t["targets"].get<std::uint64_t>()),
                static_cast<unsigned long long>(t["adapter_params"].get<std::uint64_t>()),
                t["max_abs_error"].get<double>(), t["seconds"].get<double>());
  return buf;
}

}  // namespace ckpt
