#include "ckptkit/commands/svd_init/svd_init.hpp"

#include <time.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>

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
  const CheckpointTensor* tensor = nullptr;    // the stored tensor (a quantized weight's codes)
  TensorInfo info;                             // the weight: name, float dtype, logical shape
  const QuantizedGroup* quantized = nullptr;   // a quantized input weight: dequantized first
  std::optional<QuantFormat> residual_format;  // QPiSSA: W_res quantized into this format
  const CheckpointTensor* base = nullptr;      // extraction
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
  Json totals = {
      {"targets", rows.size()},
      {"adapter_params", sum_of_counts(rows, "adapter_params")},
      {"max_abs_error", max_abs},
      {"energy_target_met", any_target ? Json(all_met) : Json(nullptr)},
      {"residual_files", residual_files},
      {"randomized_gflops",
       gemm_seconds > 0 ? Json(round_sig(flops / gemm_seconds / 1e9, 4)) : Json(nullptr)}};
  if (report["settings"].value("residual_quantization", Json()).is_null()) return totals;
  // Quantized residual: the errors over all targets, √(Σ err² / Σ ‖W‖²).
  const double norm_sq = sum_of_row_sums(rows, "norm_sq");
  auto rel = [&](const char* key) {
    bool all = !rows.empty();
    for (const auto& r : rows)
      all = all && r.contains("sums") && r["sums"].contains(key);
    return all && norm_sq > 0 ? Json(round_sig(std::sqrt(sum_of_row_sums(rows, key) / norm_sq)))
                              : Json(nullptr);
  };
  totals["qpissa_rel_error"] = rel("qpissa_err_sq");
  totals["qlora_rel_error"] = rel("qlora_err_sq");
  totals["loftq_rel_error"] = rel("loftq_err_sq");
  return totals;
}

/// What a quantized residual measured (QPiSSA), as f64 sums over the whole matrix.
struct QuantizedResidualStats {
  double residual_sq = 0;  // ‖W_res‖² = ‖W − s·B·A‖² (f32 W_res)
  double err_sq = 0;       // ‖Q(W_res) + s·B·A − W‖²
  double max_abs = 0;      // max |Q(W_res) + s·B·A − W|
  double bits_stored = 0;
  std::optional<double> qlora_err_sq;  // ‖Q(W) − W‖² (plain QLoRA at the same bits)
  std::optional<double> loftq_err_sq;  // ‖W − Q(W) − SVD_r(W − Q(W))‖² (LoftQ's order, 1 step)
};

/// The per-tensor work: decode (or dequantize; and subtract the base), decompose, build the
/// residual in the input dtype or quantized, measure. `residual` is null for extraction.
struct TensorDecomposer {
  const SvdInitOptions& o;
  SvdInitMethod method;
  const Checkpoint& in;
  const std::optional<Checkpoint>& base;
  const SvdInitParams& params;
  ScratchPool& scratch;

  Done operator()(const Target& tg, const TensorView& view,
                  std::vector<OwnedTensor>* residual) const;

 private:
  std::vector<float> load(const Target& tg, const TensorView& view, double& norm_sq) const;
  std::vector<float> quantization_error(const Target& tg, std::span<const float> w,
                                        double& err_sq) const;
  QuantizedResidualStats quantize_residual(const Target& tg, std::vector<float>& w,
                                           const SvdInitResult& r,
                                           std::vector<OwnedTensor>& outputs) const;
  double loftq_err_sq(const Target& tg, std::vector<float>& e, int rank) const;
};

/// W in storage orientation as f32: decoded with the NaN/Inf check and ‖W‖²_F in one pass over
/// cache-sized chunks (the same fixed chunks and f64 sum order for any thread count), or
/// dequantized from a quantized input.
std::vector<float> TensorDecomposer::load(const Target& tg, const TensorView& view,
                                          double& norm_sq) const {
  const std::string file = in.file_of(*tg.tensor);
  norm_sq = 0;
  if (tg.quantized) {
    std::vector<float> w = dequantize_weight(in, *tg.quantized).values;
    check_finite(w, file, tg.info.name);
    norm_sq = frobenius_sq(w);
    return w;
  }
  std::vector<float> w = scratch.take(static_cast<std::size_t>(view.numel()));
  constexpr std::size_t kChunk = 16384;
  const std::size_t size = dtype_size(view.dtype);
  for (std::size_t c0 = 0; c0 < w.size(); c0 += kChunk) {
    const std::size_t len = std::min(kChunk, w.size() - c0);
    const std::span<float> chunk(w.data() + c0, len);
    decode_to_f32(view.dtype, view.bytes.subspan(c0 * size, len * size), chunk);
    if (!all_finite(chunk))  // locate the first bad element (index in the whole tensor)
      check_finite(std::span<const float>(w.data(), c0 + len), file, tg.info.name);
    norm_sq += frobenius_sq(chunk);
  }
  return w;
}

/// E = W − Q(W) in math orientation for `w` in storage orientation, and ‖E‖² (QLoRA's error).
std::vector<float> TensorDecomposer::quantization_error(const Target& tg, std::span<const float> w,
                                                        double& err_sq) const {
  std::vector<float> e = quantize_weight(*tg.residual_format, tg.info, w, true).dequantized;
  for (std::size_t i = 0; i < e.size(); ++i)
    e[i] = w[i] - e[i];
  err_sq = sum_sq(e);
  if (tg.transposed) e = transpose(e, tg.info.shape[0], tg.info.shape[1]);
  return e;
}

/// Turns `w` (math orientation) into W_res and quantizes it into the target's format: the
/// residual's tensors go to `outputs`; the error is that of Q(W_res) against W_res, which is
/// Q(W_res) + s·B·A − W up to one f32 rounding.
QuantizedResidualStats TensorDecomposer::quantize_residual(
    const Target& tg, std::vector<float>& w, const SvdInitResult& r,
    std::vector<OwnedTensor>& outputs) const {
  subtract_adapter_delta(w, r, tg.out, tg.in, params.parallel);
  if (tg.transposed) w = transpose(w, tg.out, tg.in);  // storage orientation
  QuantizedWeight q = quantize_weight(*tg.residual_format, tg.info, w, true);
  QuantizedResidualStats st;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double d = static_cast<double>(q.dequantized[i]) - w[i];
    st.residual_sq += static_cast<double>(w[i]) * w[i];
    st.err_sq += d * d;
    st.max_abs = std::max(st.max_abs, std::fabs(d));
  }
  st.bits_stored = q.bits_stored;
  outputs = std::move(q.tensors);
  return st;
}

/// LoftQ's order at rank `rank`: the residual error of the best rank-`rank` fit of E = W − Q(W)
/// (`e`, math orientation, overwritten).
double TensorDecomposer::loftq_err_sq(const Target& tg, std::vector<float>& e, int rank) const {
  SvdInitParams p = params;
  p.method = SvdInitMethod::Pissa;
  p.rank = rank;
  p.energy.reset();
  p.alpha.reset();
  p.rslora = false;
  p.norm_sq.reset();
  const SvdInitResult fit = svd_init_matrix(e, tg.out, tg.in, p, tg.info.name + "#loftq");
  return residual_in_place(e, fit, tg.out, tg.in, false, {}, params.parallel).err_sq;
}

Done TensorDecomposer::operator()(const Target& tg, const TensorView& view,
                                  std::vector<OwnedTensor>* residual) const {
  const auto t0 = Clock::now();
  const auto& info = tg.info;
  const std::string file = in.file_of(*tg.tensor);
  double cpu = thread_cpu_seconds();
  auto lap = [&cpu] {
    const double now = thread_cpu_seconds(), d = now - cpu;
    cpu = now;
    return d;
  };
  SvdInitParams tensor_params = params;
  double norm_sq = 0;
  std::vector<float> w = load(tg, view, norm_sq);
  if (!tg.base) tensor_params.norm_sq = norm_sq;  // extraction: the norm of ΔW, not of W
  if (tg.base) {
    std::vector<float> b = to_f32(base->view(*tg.base));
    check_finite(b, base->file_of(*tg.base), info.name);
    for (std::size_t i = 0; i < w.size(); ++i)
      w[i] -= b[i];
    base->release(*tg.base);
  }
  // QPiSSA's comparisons, from W before it becomes W_res: plain Q(W) and E = W − Q(W).
  std::optional<std::vector<float>> quant_error;
  double qlora_err_sq = 0;
  if (tg.residual_format && !tg.quantized && o.compare_quantization)
    quant_error = quantization_error(tg, w, qlora_err_sq);
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
  // A quantized residual is measured against W_res after quantizing it whole.
  Done done;
  ResidualStats st;
  std::optional<QuantizedResidualStats> qst;
  if (residual && tg.residual_format) {
    qst = quantize_residual(tg, w, r, *residual);
    st.err_sq = qst->residual_sq;
    st.max_abs = qst->max_abs;
  } else {
    ResidualOutput dst;
    if (residual) {
      residual->resize(1);
      OwnedTensor& out = residual->front();
      out.name = info.name;
      out.dtype = info.dtype;
      out.shape = info.shape;
      out.bytes.resize(w.size() * dtype_size(info.dtype));
      dst = {view.dtype, view.bytes, info.dtype, out.bytes};
    }
    st = residual_in_place(w, r, tg.out, tg.in, tg.transposed, dst, params.parallel);
  }
  const double residual_cpu = lap();
  if (qst && quant_error) {
    qst->qlora_err_sq = qlora_err_sq;
    qst->loftq_err_sq = loftq_err_sq(tg, *quant_error, r.rank);
  }
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
  if (tg.quantized) done.row["input_layout"] = quant_layout_name(tg.quantized->layout);
  Json sums = {{"gemm_flops", r.gemm_flops}, {"gemm_seconds", r.gemm_seconds}};
  if (qst) {
    auto rel = [norm](std::optional<double> e_sq) {
      return e_sq && norm > 0 ? Json(round_sig(std::sqrt(*e_sq) / norm)) : Json(nullptr);
    };
    done.row["residual_scheme"] = quant_format_scheme(*tg.residual_format);
    done.row["residual_bits_per_param"] = round_sig(qst->bits_stored, 6);
    done.row["qpissa_rel_error"] = rel(qst->err_sq);
    done.row["qlora_rel_error"] = rel(qst->qlora_err_sq);
    done.row["loftq_rel_error"] = rel(qst->loftq_err_sq);
    done.row["qpissa_vs_qlora"] = qst->qlora_err_sq && *qst->qlora_err_sq > 0
                                      ? Json(round_sig(std::sqrt(qst->err_sq / *qst->qlora_err_sq)))
                                      : Json(nullptr);
    sums["norm_sq"] = r.norm_sq;
    sums["qpissa_err_sq"] = qst->err_sq;
    if (qst->qlora_err_sq) sums["qlora_err_sq"] = *qst->qlora_err_sq;
    if (qst->loftq_err_sq) sums["loftq_err_sq"] = *qst->loftq_err_sq;
  } else if (residual) {
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
  done.row["sums"] = sums;
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
    tg.info = w.info;
    tg.quantized = w.quantized;
    tg.module = w.adapter_module;
    tg.embedding = w.embedding;
    // PEFT: Conv1D weights are [in, out]; embeddings' ΔW is (B·A)ᵀ. Both: decompose the transpose.
    tg.transposed = w.conv1d != tg.embedding;
    tg.out = tg.transposed ? tg.info.shape[1] : tg.info.shape[0];
    tg.in = tg.transposed ? tg.info.shape[0] : tg.info.shape[1];
    const std::int64_t kmax = std::min(tg.out, tg.in);
    if (!o.energy && o.rank >= kmax)
      fail(ErrorKind::Usage,
           located(in.file_of(t), t.info.name,
                   "rank " + std::to_string(o.rank) + " >= min(out, in) = " + std::to_string(kmax) +
                       " of shape " + shape_str(tg.info.shape)));
    if (kmax < 2)
      fail(ErrorKind::Usage,
           located(in.file_of(t), t.info.name,
                   "shape " + shape_str(tg.info.shape) + " has no rank to split"));
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

/// The residual's quantization: --quantize-residual's format for every target (QPiSSA), else a
/// quantized input weight's own format (read from its state) for that weight. Returns the
/// --quantize-residual format. Usage errors before any output exists.
std::optional<QuantFormat> plan_residual_formats(const SvdInitOptions& o, const Checkpoint& in,
                                                 const QuantizedBase& quantized_in,
                                                 std::vector<Target>& targets) {
  std::optional<QuantFormat> format;
  if (o.quantize_residual) {
    if (o.base)
      fail(ErrorKind::Usage,
           "--quantize-residual: extraction (--base) writes no residual to quantize");
    format = resolve_quant_format(*o.quantize_residual, "--quantize-residual");
    // A quantized input keeps every untargeted weight as it is stored: one format in the output.
    std::set<std::string> targeted;
    for (const auto& tg : targets)
      targeted.insert(tg.info.name);
    for (const auto& g : quantized_in.groups)
      if (!targeted.count(g.weight) && !(stored_quant_format(in, g) == *format))
        fail(ErrorKind::Usage,
             located(in.file_of(*in.find(g.weight)), g.weight,
                     "stays quantized as it is (not a target), so the residual cannot be "
                     "quantized as " +
                         quant_format_scheme(*format) +
                         ": drop --quantize-residual (the residual keeps the input's format) or "
                         "target this weight too"));
  }
  for (auto& tg : targets)
    tg.residual_format =
        format
            ? format
            : (tg.quantized ? std::optional(stored_quant_format(in, *tg.quantized)) : std::nullopt);
  return format;
}

Json run_svd_init(const SvdInitOptions& o) {
  const auto start = Clock::now();
  const bool extract = o.base.has_value();
  const SvdInitMethod method = extract ? SvdInitMethod::Extract : o.method;
  const SvdAlgorithm algo = resolve_algorithm(o, method);

  const Checkpoint in = Checkpoint::open(o.input);
  std::optional<Checkpoint> base;
  if (extract) base = Checkpoint::open(*o.base);
  // A quantized input (bnb or ckptkit layout) is read weight by weight, dequantized.
  const QuantizedBase quantized_in = find_quantized_weights(in);
  TargetPolicy policy{"svd-init"};
  if (!extract) policy.quantized = &quantized_in;
  const TargetSelection selection = select_targets(in, o.common.targets, policy);

  std::vector<Target> targets = validate_targets(o, in, base, selection);  // --shard keeps a share
  const std::optional<QuantFormat> residual_format =
      plan_residual_formats(o, in, quantized_in, targets);

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
    // f32 copy of W (and of the base) + the cast residual + SVD temporaries (exact: ~2 more
    // copies); a quantized residual adds W − Q(W), a dequantized copy and a transpose.
    return static_cast<std::uint64_t>(tg.out * tg.in) * sizeof(float) *
           ((algo == SvdAlgorithm::Exact ? 5 : 3) + (tg.residual_format ? 3 : 0));
  };

  std::vector<std::string> residual_files;
  if (!extract) {
    const fs::path residual_dir = out.part(kResidualPart);
    std::set<std::string> companions;  // of the quantized weights re-quantized here
    for (const auto& tg : targets)
      if (tg.quantized)
        companions.insert(tg.quantized->companions.begin(), tg.quantized->companions.end());
    const StreamJob job =
        folding(targets_job(
                    in, targets,
                    [&](const Target& tg) {
                      const TensorInfo& t = tg.info;
                      return std::pair{tg.residual_format
                                           ? quant_format_specs(*tg.residual_format, t)
                                           : std::vector<TensorSpec>{{t.name, t.dtype, t.shape}},
                                       working_set(tg)};
                    },
                    [&](const Target& tg, const TensorView& v, std::vector<OwnedTensor>& outputs) {
                      return work(tg, v, &outputs);
                    },
                    collect),
                std::move(companions));
    WriterOptions wo = writer_options(o.common, in.metadata());
    wo.write_metadata = in.shards().front().header.has_metadata || residual_format;
    if (wo.write_metadata && wo.metadata.empty()) wo.metadata = {{"format", "pt"}};
    residual_files = stream_checkpoint(job, residual_dir, wo, o.common.exec, "svd-init");
    // config.json says how the residual is quantized when --quantize-residual changed it.
    std::function<void(nlohmann::json&)> describe;
    if (residual_format)
      describe = [&](nlohmann::json& c) {
        describe_quant_format(c, *residual_format, o.compute_dtype, selection.left_alone);
      };
    copy_model_files(in, residual_dir, describe);
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
      {"fan_in_fan_out", selection.fan_in_fan_out},
      {"quantized_input",
       quantized_in.groups.empty() ? Json(nullptr) : Json(quantized_in.layout_names())},
      {"residual_quantization",
       residual_format ? quant_format_json(*residual_format)
                       : (quantized_in.groups.empty() ? Json(nullptr) : Json("as the input"))}};
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
  std::string line = buf;
  if (t.value("qpissa_rel_error", Json()).is_number()) {
    std::snprintf(buf, sizeof buf, "quantized residual: relative error %.4g",
                  t["qpissa_rel_error"].get<double>());
    line += buf;
    if (t["qlora_rel_error"].is_number() && t["loftq_rel_error"].is_number()) {
      std::snprintf(buf, sizeof buf, " (QLoRA %.4g, LoftQ order %.4g at the same bits)",
                    t["qlora_rel_error"].get<double>(), t["loftq_rel_error"].get<double>());
      line += buf;
    }
    line += "\n";
  }
  return line;
}

}  // namespace ckpt
