#include "ckptkit/commands/merge/merge.hpp"

#include <Eigen/Core>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "ckptkit/adapters/any_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/formats/quantized_base.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// One adapter module applied to a base tensor with weight w_k.
struct Part {
  const AnyAdapter* adapter = nullptr;
  std::size_t module = 0;
  std::size_t adapter_index = 0;
  double weight = 1;
};

/// A base tensor that receives deltas.
struct Target {
  std::vector<Part> parts;
  DType out_dtype = DType::F32;
  const QuantizedGroup* quantized = nullptr;  // quantized base weight (dequantized first)
};

/// Per-block numbers, reduced in block order so that reports do not depend on --threads.
struct Stats {
  double base_sq = 0, delta_sq = 0, out_sq = 0, max_abs_change = 0;
  std::int64_t bad_at = -1;  // first element whose merged value is not finite after the cast
  double bad_value = 0;
};

/// Adds the merged values `merged` (before the cast), as stored, against the base `orig` to `s`;
/// element 0 is element `first` of the tensor (for the first non-finite one). The sums run in four
/// fixed lanes (element i in lane i % 4, folded in one order), which the compiler vectorizes and
/// no thread count or SIMD path changes.
void add_stats(const double* orig, const double* merged, const double* stored, std::size_t n,
               std::size_t first, Stats& s) {
  constexpr std::size_t kLanes = 4;
  double base[kLanes] = {}, delta[kLanes] = {}, out[kLanes] = {}, change[kLanes] = {};
  bool finite = true;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = i % kLanes;
    const double dd = merged[i] - orig[i];
    base[j] += orig[i] * orig[i];
    delta[j] += dd * dd;
    out[j] += stored[i] * stored[i];
    change[j] = std::max(change[j], std::fabs(stored[i] - orig[i]));
    finite &= std::isfinite(stored[i]);
  }
  const auto fold = [](const double(&v)[kLanes]) { return (v[0] + v[1]) + (v[2] + v[3]); };
  s.base_sq += fold(base);
  s.delta_sq += fold(delta);
  s.out_sq += fold(out);
  for (double c : change)
    s.max_abs_change = std::max(s.max_abs_change, c);
  if (finite || s.bad_at >= 0) return;
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(stored[i])) {
      s.bad_at = static_cast<std::int64_t>(first + i);
      s.bad_value = merged[i];
      return;
    }
}

/// out = cast(base + Σ w_k·ΔW_k), row block by row block. Each block computes its slice of every
/// factored delta with one f32 GEMM (L rows × R) and accumulates in f64; block boundaries depend
/// only on the shape, so the bytes are the same for any thread count.
Stats merge_matrix(std::span<const double> base_f64, const TensorView* base_view, std::int64_t rows,
                   std::int64_t cols, const std::vector<Part>& parts,
                   const std::vector<std::vector<float>>& dense, DType out_dtype, std::byte* out) {
  const std::int64_t block = std::max<std::int64_t>(1, 65536 / std::max<std::int64_t>(cols, 1));
  const std::size_t nblocks = static_cast<std::size_t>((rows + block - 1) / block);
  std::vector<Stats> stats(nblocks);
  const std::size_t out_size = dtype_size(out_dtype);
  parallel_chunks(nblocks, 1, [&](std::size_t b0, std::size_t b1) {
    std::vector<double> orig, acc, stored;
    RowF tmp;
    for (std::size_t b = b0; b < b1; ++b) {
      const std::int64_t r0 = static_cast<std::int64_t>(b) * block;
      const std::int64_t r1 = std::min(rows, r0 + block);
      const std::size_t n = static_cast<std::size_t>((r1 - r0) * cols);
      const std::size_t off = static_cast<std::size_t>(r0 * cols);
      orig.resize(n);
      if (base_view) {
        const std::size_t es = dtype_size(base_view->dtype);
        decode_to_f64(base_view->dtype, base_view->bytes.subspan(off * es, n * es), orig);
      } else {
        std::copy_n(base_f64.data() + off, n, orig.data());
      }
      acc = orig;
      for (std::size_t p = 0; p < parts.size(); ++p) {
        const AdapterDelta& d = parts[p].adapter->modules[parts[p].module];
        const float* t;
        double c = parts[p].weight;
        if (d.rank > 0) {
          tmp.noalias() = Eigen::Map<const RowF>(d.L.data() + r0 * d.rank, r1 - r0, d.rank) *
                          Eigen::Map<const RowF>(d.R.data(), d.rank, cols);
          t = tmp.data();
          c *= d.scale;
        } else {
          t = dense[p].data() + off;  // scale included
        }
        for (std::size_t i = 0; i < n; ++i)
          acc[i] += c * static_cast<double>(t[i]);
      }
      stored.resize(n);
      encode_from_f64(out_dtype, acc, std::span<std::byte>(out + off * out_size, n * out_size),
                      stored);
      add_stats(orig.data(), acc.data(), stored.data(), n, off, stats[b]);
    }
  });
  Stats total;
  for (const auto& s : stats) {
    total.base_sq += s.base_sq;
    total.delta_sq += s.delta_sq;
    total.out_sq += s.out_sq;
    total.max_abs_change = std::max(total.max_abs_change, s.max_abs_change);
    if (total.bad_at < 0 && s.bad_at >= 0) {
      total.bad_at = s.bad_at;
      total.bad_value = s.bad_value;
    }
  }
  return total;
}

/// DoRA (PEFT's DoraLinearVariant.merge_safe): V = W + ΔW, then every output feature of V is
/// scaled to its magnitude: W' = m / ‖V‖ · V, the norm taken over the input features (rows of
/// [out, in] storage, columns of Conv1D's [in, out]). In f64, one rounding to the output dtype.
Stats merge_dora(std::span<const double> base_f64, const TensorView* base_view, std::int64_t rows,
                 std::int64_t cols, const AdapterDelta& d, DType out_dtype, std::byte* out) {
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  std::vector<double> orig(n);
  if (base_view)
    decode_to_f64(base_view->dtype, base_view->bytes, orig);
  else
    std::copy_n(base_f64.data(), n, orig.data());
  RowF delta(rows, cols);
  delta.noalias() = Eigen::Map<const RowF>(d.L.data(), rows, d.rank) *
                    Eigen::Map<const RowF>(d.R.data(), d.rank, cols);
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = orig[i] + d.scale * static_cast<double>(delta.data()[i]);
  const std::int64_t features = d.transposed ? cols : rows;
  std::vector<double> norm_sq(static_cast<std::size_t>(features), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const double x = v[static_cast<std::size_t>(r * cols + c)];
      norm_sq[static_cast<std::size_t>(d.transposed ? c : r)] += x * x;
    }
  for (std::int64_t r = 0; r < rows; ++r)  // v becomes the merged values
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * cols + c);
      const std::size_t f = static_cast<std::size_t>(d.transposed ? c : r);
      v[i] = static_cast<double>(d.magnitude[f]) / std::sqrt(norm_sq[f]) * v[i];
    }
  std::vector<double> stored(n);
  encode_from_f64(out_dtype, v, std::span<std::byte>(out, n * dtype_size(out_dtype)), stored);
  Stats s;
  add_stats(orig.data(), v.data(), stored.data(), n, 0, s);
  return s;
}

std::string torch_dtype_of(DType t) {
  switch (t) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::F64:
      return "float64";
    default:
      return "float32";
  }
}

/// Full tensors adapters saved (modules_to_save): what merge_and_unload + save_pretrained keep.
struct SavedPlan {
  std::map<std::string, const OwnedTensor*> replaced;  ///< base name -> trained copy
  std::vector<const OwnedTensor*> added;               ///< heads the base lacks
  /// A head added to a base stored without its base-model prefix: the output is written in the
  /// task model's names (prefix added), or transformers would prefix the head too and drop it.
  bool to_task_layout = false;
  const ModuleNaming* naming = nullptr;
  Json report = Json::array();

  std::string out_name(const std::string& name) const {
    return to_task_layout ? naming->peft_module(name) : name;
  }
  bool empty() const { return replaced.empty() && added.empty() && !to_task_layout; }
};

SavedPlan plan_saved_tensors(const std::vector<AnyAdapter>& adapters, const MergeOptions& o,
                             const std::map<std::string, Target>& targets,
                             const QuantizedBase& qbase, const Checkpoint& base,
                             const ModuleNaming& naming) {
  SavedPlan plan;
  plan.naming = &naming;
  std::map<std::string, std::size_t> owner;
  for (std::size_t a = 0; a < adapters.size(); ++a)
    for (std::size_t i = 0; i < adapters[a].saved.size(); ++i) {
      const OwnedTensor& t = adapters[a].saved[i];
      const std::string file = adapters[a].weights.string();
      if (!o.weights.empty() && o.weights[a] != 1)
        fail(ErrorKind::Usage, located(file, t.name,
                                       "a saved module tensor (modules_to_save) replaces the "
                                       "base's: --weights must be 1 for this adapter"));
      if (targets.count(t.name))
        fail(ErrorKind::Format,
             located(file, t.name, "both a saved module tensor and a LoRA target"));
      if (qbase.group_of_any(t.name))
        fail(ErrorKind::Unsupported,
             located(file, t.name, "a saved module tensor replaces a quantized weight"));
      if (const auto [it, fresh] = owner.emplace(t.name, a); !fresh)
        fail(ErrorKind::Usage,
             located(file, t.name,
                     "also saved by adapter " + adapters[it->second].weights.string()));
      const bool added = adapters[a].saved_is_new[i];
      if (added)
        plan.added.push_back(&t);
      else
        plan.replaced[t.name] = &t;
      plan.report.push_back(
          {{"name", t.name}, {"adapter", a}, {"action", added ? "added" : "replaced"}});
    }
  plan.to_task_layout = !plan.added.empty() && naming.stored_prefix.empty() &&
                        !naming.prefix.empty() && naming.task != TaskType::FeatureExtraction;
  if (plan.to_task_layout && !qbase.groups.empty())
    fail(ErrorKind::Unsupported,
         located(base.path().string(), "",
                 "adding a head to a quantized base stored without its prefix"));
  for (const OwnedTensor* t : plan.added)
    if (base.find(plan.out_name(t->name)))
      fail(ErrorKind::Format,
           located(base.path().string(), t->name, "the added head's name is already taken"));
  return plan;
}

/// Wraps `job` so that saved tensors replace their base tensors, added heads follow the last
/// tensor, and every name follows `saved.out_name`.
void add_saved_tensors(StreamJob& job, const SavedPlan& saved, const Checkpoint& base,
                       std::optional<DType> dtype) {
  if (saved.empty()) return;
  const CheckpointTensor* last = &base.tensors().back();
  auto inner_plan = job.plan;
  auto inner_compute = job.compute;
  job.plan = [=, &saved](const CheckpointTensor& t) {
    TensorPlan p = inner_plan(t);
    if (const auto it = saved.replaced.find(t.info.name); it != saved.replaced.end()) {
      p.passthrough = false;
      // A trained copy takes the base tensor's dtype, as the module it replaces had in memory.
      p.outputs = {{t.info.name, dtype.value_or(t.info.dtype), it->second->shape}};
      p.working_set = it->second->bytes.size() * 2;
    } else if (p.passthrough && (saved.to_task_layout || &t == last)) {
      p.passthrough = false;
      p.outputs = {{t.info.name, t.info.dtype, t.info.shape}};
      p.working_set = t.info.nbytes();
    }
    for (auto& spec : p.outputs)
      spec.name = saved.out_name(spec.name);
    if (&t == last)
      for (const OwnedTensor* a : saved.added) {
        p.passthrough = false;
        p.outputs.push_back({saved.out_name(a->name), dtype.value_or(a->dtype), a->shape});
        p.working_set += a->bytes.size() * 2;
      }
    return p;
  };
  job.compute = [=, &saved](const CheckpointTensor& t, const TensorView& v) {
    TensorResult r;
    if (const auto it = saved.replaced.find(t.info.name); it != saved.replaced.end()) {
      const OwnedTensor& s = *it->second;
      const DType dt = dtype.value_or(t.info.dtype);
      r.outputs.push_back({t.info.name, dt, s.shape, convert_float_bytes(s.dtype, dt, s.bytes)});
    } else if (inner_plan(t).passthrough) {
      r.outputs.push_back(
          {t.info.name, t.info.dtype, t.info.shape, {v.bytes.begin(), v.bytes.end()}});
    } else {
      r = inner_compute(t, v);
    }
    for (auto& out : r.outputs)
      out.name = saved.out_name(out.name);
    if (&t == last)
      for (const OwnedTensor* a : saved.added) {
        const DType dt = dtype.value_or(a->dtype);
        r.outputs.push_back(
            {saved.out_name(a->name), dt, a->shape, convert_float_bytes(a->dtype, dt, a->bytes)});
      }
    return r;
  };
}

/// Rows of an added classifier head (score / classifier), when config.json does not already
/// have that many labels.
std::optional<std::int64_t> head_labels(const SavedPlan& saved, const ModuleNaming& naming,
                                        const std::optional<nlohmann::json>& config) {
  if (!config || !config->is_object()) return std::nullopt;
  for (const OwnedTensor* t : saved.added) {
    if (!naming.is_head(t->name) || t->shape.size() != 2 || !t->name.ends_with(".weight")) continue;
    const std::string leaf = t->name.substr(0, t->name.size() - 7);
    if (leaf != "score" && leaf != "classifier" && !leaf.ends_with(".out_proj")) continue;
    const std::int64_t n = t->shape[0];
    const auto it = config->find("id2label");
    if (it != config->end() && it->is_object() && static_cast<std::int64_t>(it->size()) == n)
      return std::nullopt;
    return n;
  }
  return std::nullopt;
}

/// An svd-init / mpo-init / lq-decompose output given alone: its residual (or quantized base)
/// plus its adapter (io/output_layout.hpp).
void expand_pair(MergeOptions& o) {
  if (!o.adapters.empty()) return;
  const fs::path adapter = adapter_part(o.base);
  if (adapter != o.base) {
    o.adapters = {adapter};
    o.base = checkpoint_part(o.base);
    return;
  }
  fail(ErrorKind::Usage, located(o.base.string(), "",
                                 "no adapter given (and not an svd-init/mpo-init/lq-decompose "
                                 "output holding an adapter/ and its checkpoint)"));
}

/// How much of one merged update survives quantizing the merged weight again (f64 sums).
struct RequantStats {
  double delta_sq = 0;  // ‖ΔW‖², ΔW = M − W_q (the merged weight minus the dequantized base)
  double kept_dot = 0;  // ⟨R − W_q, ΔW⟩, R = the requantized merged weight, dequantized
  double requant_err_sq = 0;  // ‖R − M‖²
  double merged_sq = 0;       // ‖M‖²
  // With --original W_o: the ideal merge W_o + ΔW, R's distance to it, and the error of
  // quantizing the ideal merge once.
  std::optional<double> ideal_sq, vs_ideal_sq, ideal_requant_err_sq;

  RequantStats& operator+=(const RequantStats& o) {
    delta_sq += o.delta_sq;
    kept_dot += o.kept_dot;
    requant_err_sq += o.requant_err_sq;
    merged_sq += o.merged_sq;
    if (o.ideal_sq) {
      ideal_sq = ideal_sq.value_or(0) + *o.ideal_sq;
      vs_ideal_sq = vs_ideal_sq.value_or(0) + *o.vs_ideal_sq;
      ideal_requant_err_sq = ideal_requant_err_sq.value_or(0) + *o.ideal_requant_err_sq;
    }
    return *this;
  }
};

RequantStats requant_stats(std::span<const double> base, std::span<const float> merged,
                           std::span<const float> requantized) {
  RequantStats st;
  for (std::size_t i = 0; i < merged.size(); ++i) {
    const double delta = merged[i] - base[i];
    const double kept = requantized[i] - base[i];
    const double err = static_cast<double>(requantized[i]) - merged[i];
    st.delta_sq += delta * delta;
    st.kept_dot += kept * delta;
    st.requant_err_sq += err * err;
    st.merged_sq += static_cast<double>(merged[i]) * merged[i];
  }
  return st;
}

/// Adds the --original comparison: `original` (the full-precision base weight) + ΔW against the
/// requantized merge, and that ideal merge quantized once in `format`.
void compare_with_original(RequantStats& st, const QuantFormat& format, const TensorInfo& info,
                           std::span<const double> base, std::span<const float> merged,
                           std::span<const float> requantized, std::span<const float> original) {
  std::vector<float> ideal(merged.size());
  for (std::size_t i = 0; i < ideal.size(); ++i)
    ideal[i] = static_cast<float>(original[i] + (merged[i] - base[i]));
  const std::vector<float> once = quantize_weight(format, info, ideal, true).dequantized;
  double ideal_sq = 0, vs = 0, once_err = 0;
  for (std::size_t i = 0; i < ideal.size(); ++i) {
    const double x = ideal[i];
    ideal_sq += x * x;
    vs += (requantized[i] - x) * (requantized[i] - x);
    once_err += (once[i] - x) * (once[i] - x);
  }
  st.ideal_sq = ideal_sq;
  st.vs_ideal_sq = vs;
  st.ideal_requant_err_sq = once_err;
}

Json requant_row(const RequantStats& st, const QuantFormat& format) {
  auto ratio = [](double num_sq, double den_sq) {
    return den_sq > 0 ? Json(round_sig(std::sqrt(num_sq / den_sq))) : Json(nullptr);
  };
  Json j = {{"scheme", quant_format_scheme(format)},
            {"layout", quant_layout_name(format.layout)},
            {"delta_surviving_fraction",
             st.delta_sq > 0 ? Json(round_sig(st.kept_dot / st.delta_sq)) : Json(nullptr)},
            {"delta_requant_error_rel", ratio(st.requant_err_sq, st.delta_sq)},
            {"requant_rel_error", ratio(st.requant_err_sq, st.merged_sq)}};
  if (st.ideal_sq) {
    j["vs_original_merge_rel_error"] = ratio(*st.vs_ideal_sq, *st.ideal_sq);
    j["original_merge_requant_rel_error"] = ratio(*st.ideal_requant_err_sq, *st.ideal_sq);
  }
  return j;
}

/// --requantize's format, and whether any quantized weight of the base is stored in another one
/// (then config.json's description is rewritten).
struct Requantize {
  QuantFormat format;
  bool format_changed = false;
};

/// --requantize, checked before any output exists: the base must be quantized, and every
/// quantized weight no adapter touches (kept as stored) must already be in the format, so that
/// the output has one. --original must hold each requantized weight as floats.
Requantize plan_requantize(const MergeOptions& o, const Checkpoint& base,
                           const QuantizedBase& qbase, const std::map<std::string, Target>& targets,
                           const std::optional<Checkpoint>& original) {
  if (qbase.groups.empty())
    fail(ErrorKind::Usage, o.base.string() +
                               ": --requantize needs a quantized base; for a float base, merge "
                               "and then ckptkit quantize the output");
  if (o.dtype)
    fail(ErrorKind::Usage,
         "--dtype and --requantize exclude each other (the quantized weights "
         "keep their original dtype in the quant_state)");
  Requantize r{resolve_quant_format(*o.requantize, "--requantize")};
  for (const auto& g : qbase.groups) {
    const bool same = stored_quant_format(base, g) == r.format;
    r.format_changed = r.format_changed || !same;
    if (targets.count(g.weight)) {
      if (!original) continue;
      const CheckpointTensor* t = original->find(g.weight);
      const Shape shape = qbase.logical_shape(g.weight);
      if (!t || !is_float(t->info.dtype) || t->info.shape != shape)
        fail(ErrorKind::Usage,
             located(original->path().string(), g.weight,
                     t ? "is " + std::string(dtype_name(t->info.dtype)) + " " +
                             shape_str(t->info.shape) + ", not a float weight of shape " +
                             shape_str(shape) + " (the quantized base's)"
                       : "missing in --original (it must be the checkpoint the quantized base "
                         "was made from)"));
      continue;
    }
    if (!same)
      fail(ErrorKind::Usage,
           located(base.file_of(*base.find(g.weight)), g.weight,
                   "is stored in another format and no adapter touches it, so the output would "
                   "mix two formats; --requantize with the base's own scheme and block"));
  }
  return r;
}

/// `merge ADAPTER BASE`: the first argument is an adapter folder and the second is not.
void check_not_swapped(const MergeOptions& o) {
  std::error_code ec;
  const auto is_adapter = [&](const fs::path& p) {
    return fs::exists(adapter_part(p) / "adapter_config.json", ec);
  };
  const bool base_is_adapter = fs::exists(o.base / "adapter_config.json", ec);
  if (!o.adapters.empty() && base_is_adapter && !is_adapter(o.adapters.front()))
    fail(ErrorKind::Usage, o.base.string() + " is an adapter and " + o.adapters.front().string() +
                               " is not: merge takes the base checkpoint first (ckptkit merge " +
                               o.adapters.front().string() + " " + o.base.string() + " -o ...)");
}

}  // namespace

Json run_merge(const MergeOptions& opts) {
  const auto start = Clock::now();
  MergeOptions o = opts;
  expand_pair(o);
  check_not_swapped(o);
  if (!o.weights.empty() && o.weights.size() != o.adapters.size())
    fail(ErrorKind::Usage, "--weights has " + std::to_string(o.weights.size()) + " value" +
                               (o.weights.size() == 1 ? "" : "s") + " but " +
                               std::to_string(o.adapters.size()) + " adapter" +
                               (o.adapters.size() == 1 ? " was" : "s were") + " given");
  for (double w : o.weights)
    if (!std::isfinite(w)) fail(ErrorKind::Usage, "--weights must be finite numbers");
  if (o.dtype && !is_float(*o.dtype)) fail(ErrorKind::Usage, "--dtype must be a float type");

  const Checkpoint base = Checkpoint::open(o.base);
  const QuantizedBase qbase = find_quantized_weights(base);
  const ModuleNaming naming = checkpoint_naming(base, o.common.targets);
  std::vector<AnyAdapter> adapters;
  adapters.reserve(o.adapters.size());
  for (const auto& p : o.adapters) {
    adapters.push_back(read_any_adapter(p));
    resolve_any_adapter(adapters.back(), base, naming, &qbase.logical_shapes);
  }

  // Which base tensors receive which deltas (adapter order within a tensor).
  std::map<std::string, Target> targets;
  for (std::size_t a = 0; a < adapters.size(); ++a)
    for (std::size_t m = 0; m < adapters[a].modules.size(); ++m) {
      const std::string& name = adapters[a].modules[m].base_tensor;
      Target& t = targets[name];
      t.parts.push_back({&adapters[a], m, a, o.weights.empty() ? 1.0 : o.weights[a]});
    }
  for (auto& [name, t] : targets) {
    for (const auto& part : t.parts) {
      const AdapterDelta& d = part.adapter->modules[part.module];
      if (d.magnitude.empty()) continue;
      if (t.parts.size() > 1 || part.weight != 1)
        fail(ErrorKind::Usage,
             located(part.adapter->weights.string(), d.module,
                     "a DoRA module merges alone and with weight 1 (its magnitude rescales the "
                     "whole merged weight)"));
    }
    t.quantized = qbase.group_of(name);
    if (t.quantized) {
      // Requantized: merged in f32, then quantized (the quant_state keeps the original dtype).
      t.out_dtype =
          o.requantize ? DType::F32 : o.dtype.value_or(qbase.original_dtype(base, *t.quantized));
      continue;
    }
    const CheckpointTensor* ct = base.find(name);
    if (!is_float(ct->info.dtype))
      fail(ErrorKind::Unsupported,
           located(base.file_of(*ct), name,
                   "base weight is " + std::string(dtype_name(ct->info.dtype)) +
                       ", not a float type (quantized layout not recognised)"));
    t.out_dtype = o.dtype.value_or(ct->info.dtype);
  }

  const SavedPlan saved = plan_saved_tensors(adapters, o, targets, qbase, base, naming);
  std::optional<Checkpoint> original;
  if (o.original) {
    if (!o.requantize) fail(ErrorKind::Usage, "--original goes with --requantize");
    original = Checkpoint::open(*o.original);
  }
  const std::optional<Requantize> requantize =
      o.requantize ? std::optional(plan_requantize(o, base, qbase, targets, original))
                   : std::nullopt;
  const std::optional<QuantFormat> requant =
      requantize ? std::optional(requantize->format) : std::nullopt;

  std::vector<fs::path> inputs{o.base};
  for (const auto& p : o.adapters)
    inputs.push_back(p);
  if (o.original) inputs.push_back(*o.original);
  OutputDir out(o.common.output, o.common.force, inputs, o.common.report_path);

  std::vector<Json> rows;
  std::size_t cast = 0, dequantized_plain = 0, requantized = 0;
  double max_change = 0;
  RequantStats requant_total;
  StreamJob job;
  job.input = &base;
  job.plan = [&](const CheckpointTensor& t) {
    TensorPlan p;
    // A quantized weight's main tensor becomes the merged float weight; its companions vanish.
    // With --requantize it is quantized again when merged, and kept as stored otherwise.
    if (const QuantizedGroup* g = qbase.group_of_any(t.info.name)) {
      const auto it = targets.find(g->weight);
      if (requant && it == targets.end()) return p;
      p.passthrough = false;
      if (t.info.name == g->weight) {
        const DType dt = it != targets.end() ? it->second.out_dtype
                                             : o.dtype.value_or(qbase.original_dtype(base, *g));
        const Shape shape = qbase.logical_shape(g->weight);
        p.outputs = requant ? quant_format_specs(*requant,
                                                 {g->weight, qbase.original_dtype(base, *g), shape})
                            : std::vector<TensorSpec>{{g->weight, dt, shape}};
        p.working_set = static_cast<std::uint64_t>(numel(shape)) * (requant ? 24 : 8) +
                        static_cast<std::uint64_t>(numel(shape)) * dtype_size(dt);
      }
      return p;
    }
    const auto it = targets.find(t.info.name);
    if (it != targets.end()) {
      p.passthrough = false;
      p.outputs = {{t.info.name, it->second.out_dtype, t.info.shape}};
      std::uint64_t dense = 0;
      for (const auto& part : it->second.parts)
        if (part.adapter->format == AdapterFormat::Mpo) dense += 4;
      p.working_set = static_cast<std::uint64_t>(numel(t.info.shape)) *
                      (dtype_size(it->second.out_dtype) + dense);
    } else if (o.dtype && is_float(t.info.dtype) && t.info.dtype != *o.dtype) {
      p.passthrough = false;
      p.outputs = {{t.info.name, *o.dtype, t.info.shape}};
      p.working_set = t.info.nbytes() * 3;
    }
    return p;
  };
  job.compute = [&](const CheckpointTensor& t, const TensorView& v) {
    TensorResult r;
    const QuantizedGroup* g = qbase.group_of_any(t.info.name);
    if (g && t.info.name != g->weight) return r;  // a companion: folded into the weight
    const auto it = targets.find(g ? g->weight : t.info.name);
    if (it == targets.end() && !g) {  // --dtype cast of an untouched tensor
      auto bytes = convert_float_bytes(v.dtype, *o.dtype, v.bytes);
      check_cast_finite(v.dtype, v.bytes, *o.dtype, bytes, base.file_of(t), t.info.name);
      r.outputs.push_back({t.info.name, *o.dtype, t.info.shape, std::move(bytes)});
      r.on_commit = [&cast] { ++cast; };
      return r;
    }
    const auto t0 = Clock::now();
    static const Target kNone{};
    const Target& tg = it != targets.end() ? it->second : kNone;
    const DType out_dtype =
        it != targets.end() ? tg.out_dtype : o.dtype.value_or(qbase.original_dtype(base, *g));
    std::vector<double> deq;
    Shape shape = t.info.shape;
    std::string in_dtype(dtype_name(t.info.dtype));
    if (g) {
      DequantizedWeight w = qbase.dequantize(base, *g);
      deq.assign(w.values.begin(), w.values.end());
      shape = w.shape;
      in_dtype = qbase.layout_name(*g);
    }
    const std::int64_t rows_n = shape.empty() ? 1 : shape[0];
    const std::int64_t cols_n = rows_n > 0 ? numel(shape) / rows_n : 0;
    std::vector<std::vector<float>> dense(tg.parts.size());
    for (std::size_t p = 0; p < tg.parts.size(); ++p)
      if (tg.parts[p].adapter->modules[tg.parts[p].module].rank == 0)
        dense[p] = any_adapter_dense(*tg.parts[p].adapter, tg.parts[p].module);
    OwnedTensor res{t.info.name, out_dtype, shape, {}};
    res.bytes.resize(static_cast<std::size_t>(numel(shape)) * dtype_size(out_dtype));
    const AdapterDelta* dora =
        tg.parts.size() == 1 && !tg.parts[0].adapter->modules[tg.parts[0].module].magnitude.empty()
            ? &tg.parts[0].adapter->modules[tg.parts[0].module]
            : nullptr;
    const Stats s =
        dora ? merge_dora(deq, g ? nullptr : &v, rows_n, cols_n, *dora, out_dtype, res.bytes.data())
             : merge_matrix(deq, g ? nullptr : &v, rows_n, cols_n, tg.parts, dense, out_dtype,
                            res.bytes.data());
    if (s.bad_at >= 0) {
      const std::string module = TargetSelector::module_name(t.info.name);
      std::string from;
      for (const auto& part : tg.parts)
        from += (from.empty() ? "" : ", ") + part.adapter->weights.string();
      fail(ErrorKind::Format,
           located(from.empty() ? base.file_of(t) : from, module,
                   "merged value " +
                       std::string(std::isnan(s.bad_value) ? "NaN" : std::to_string(s.bad_value)) +
                       " at [" + std::to_string(s.bad_at / std::max<std::int64_t>(cols_n, 1)) +
                       ", " + std::to_string(s.bad_at % std::max<std::int64_t>(cols_n, 1)) +
                       "] is not finite in " + std::string(dtype_name(out_dtype)) +
                       " (overflow or non-finite input)"));
    }
    Json parts = Json::array();
    for (const auto& part : tg.parts) {
      const AdapterDelta& d = part.adapter->modules[part.module];
      parts.push_back({{"adapter", part.adapter_index},
                       {"format", adapter_format_name(part.adapter->format)},
                       {"dora", !d.magnitude.empty()},
                       {"rank", d.rank > 0 ? Json(d.rank) : Json(nullptr)},
                       {"scaling", round_sig(d.scale)},
                       {"weight", part.weight}});
    }
    const double base_fro = std::sqrt(s.base_sq);
    auto row = std::make_shared<Json>(
        Json{{"name", t.info.name},
             {"module", TargetSelector::module_name(t.info.name)},
             {"shape", shape},
             {"dtype_in", in_dtype},
             {"dtype_out", std::string(dtype_name(out_dtype))},
             {"adapters", parts},
             {"base_fro", round_sig(base_fro)},
             {"delta_fro", round_sig(std::sqrt(s.delta_sq))},
             {"merged_fro", round_sig(std::sqrt(s.out_sq))},
             {"rel_change_fro", base_fro > 0 ? round_sig(std::sqrt(s.delta_sq) / base_fro) : 0.0},
             {"max_abs_change", round_sig(s.max_abs_change)},
             {"seconds", round_sig(seconds_since(t0), 4)}});
    const double change = s.max_abs_change;
    const bool plain = g && it == targets.end();
    std::optional<RequantStats> rq;
    if (requant && g) {
      // The merged f32 weight quantized again; what survives is measured against the base.
      const std::span<const float> merged(reinterpret_cast<const float*>(res.bytes.data()),
                                          res.bytes.size() / sizeof(float));
      const TensorInfo info{g->weight, qbase.original_dtype(base, *g), shape};
      QuantizedWeight q = quantize_weight(*requant, info, merged, true);
      rq = requant_stats(deq, merged, q.dequantized);
      if (original) {
        const CheckpointTensor& ot = *original->find(g->weight);
        const std::vector<float> w_orig = to_f32(original->view(ot));
        check_finite(w_orig, original->file_of(ot), g->weight);
        compare_with_original(*rq, *requant, info, deq, merged, q.dequantized, w_orig);
        original->release(ot);
      }
      (*row)["requantized"] = requant_row(*rq, *requant);
      (*row)["dtype_out"] = quant_format_scheme(*requant);
      r.outputs = std::move(q.tensors);
    } else {
      r.outputs.push_back(std::move(res));
    }
    r.on_commit = [row, change, plain, rq, &rows, &max_change, &dequantized_plain, &requantized,
                   &requant_total] {
      rows.push_back(std::move(*row));
      max_change = std::max(max_change, change);
      if (plain) ++dequantized_plain;
      if (rq) {
        ++requantized;
        requant_total += *rq;
      }
    };
    return r;
  };
  add_saved_tensors(job, saved, base, o.dtype);
  std::size_t tensors_out = 0;
  job.plan = [&tensors_out, plan = job.plan](const CheckpointTensor& t) {
    TensorPlan p = plan(t);
    tensors_out += p.passthrough ? 1 : p.outputs.size();
    return p;
  };
  WriterOptions wo = writer_options(o.common, base.metadata());
  wo.write_metadata = base.shards().front().header.has_metadata;
  const fs::path model_dir = out.part(kModelPart);
  const auto files = stream_checkpoint(job, model_dir, wo, o.common.exec, "merge");

  // Non-weight files. config.json: torch_dtype follows --dtype, and a quantized base's
  // quantization_config goes (every weight is written as floats).
  const auto& config = base.config();
  const bool has_config = config && config->is_object();
  const bool drop_quant =
      has_config && !qbase.groups.empty() && config->contains("quantization_config");
  // --requantize: the base's own description stays when every weight keeps its format.
  const bool format_changed = requantize && requantize->format_changed;
  const bool set_dtype = has_config && o.dtype && config->contains("torch_dtype");
  const std::optional<std::int64_t> labels = head_labels(saved, naming, config);
  const bool rewrite_config =
      (drop_quant && !requant) || (has_config && format_changed) || set_dtype || labels;
  copy_files(base.extra_files(), model_dir,
             rewrite_config ? std::vector<std::string>{"config.json"} : std::vector<std::string>{});
  if (rewrite_config) {
    nlohmann::ordered_json c = nlohmann::ordered_json::parse(config->dump());
    if (set_dtype) c["torch_dtype"] = torch_dtype_of(*o.dtype);
    if (format_changed) {
      const nlohmann::ordered_json old =
          c.value("quantization_config", nlohmann::ordered_json::object());
      describe_quant_format(c, *requant,
                            !o.compute_dtype.empty()
                                ? o.compute_dtype
                                : old.value("bnb_4bit_compute_dtype", std::string("bfloat16")),
                            old.value("llm_int8_skip_modules", std::vector<std::string>{}));
    } else if (drop_quant && !requant) {
      c.erase("quantization_config");
    }
    if (labels) {
      // A classifier head the base lacked: transformers sizes it from id2label (default 2).
      nlohmann::ordered_json id2label, label2id;
      for (std::int64_t i = 0; i < *labels; ++i) {
        id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
        label2id["LABEL_" + std::to_string(i)] = i;
      }
      c["id2label"] = id2label;
      c["label2id"] = label2id;
    }
    write_text_file(model_dir / "config.json", c.dump(2) + "\n");
  }

  Report report("merge", o.common.argv);
  report.add_input("base", o.base.string(), fingerprint(base));
  Json adapters_json = Json::array();
  for (std::size_t a = 0; a < adapters.size(); ++a) {
    report.add_input("adapter", o.adapters[a].string(),
                     fingerprint(Checkpoint::open(adapters[a].weights)));
    adapters_json.push_back({{"path", o.adapters[a].string()},
                             {"format", adapter_format_name(adapters[a].format)},
                             {"modules", adapters[a].modules.size()},
                             {"saved_tensors", adapters[a].saved.size()},
                             {"notes", adapters[a].notes},
                             {"weight", o.weights.empty() ? 1.0 : o.weights[a]}});
  }
  report.settings() = {
      {"adapters", adapters_json},
      {"dtype", o.dtype ? std::string(dtype_name(*o.dtype)) : "base"},
      {"quantized_base", !qbase.groups.empty()},
      {"requantize", requant ? quant_format_json(*requant) : Json(nullptr)},
      {"original", o.original ? Json(o.original->string()) : Json(nullptr)},
      {"module_naming", naming.assumption},
      {"output_layout", saved.to_task_layout ? "task model (prefix '" + naming.prefix + "' added)"
                                             : std::string("as the base")},
      {"saved_tensors", saved.report},
      {"accumulation", "f32 GEMM per delta, f64 sum, one rounding to dtype"}};
  for (auto& r : rows)
    report.add_row(std::move(r));
  report.totals() = {{"merged", targets.size()},
                     {"replaced", saved.replaced.size()},
                     {"added", saved.added.size()},
                     {"dequantized_unmerged", dequantized_plain},
                     {"cast", cast},
                     {"tensors_out", tensors_out},
                     {"max_abs_change", round_sig(max_change)},
                     {"files", files},
                     {"seconds", round_sig(seconds_since(start), 4)}};
  if (requant) {
    Json t = requant_row(requant_total, *requant);
    t["weights"] = requantized;
    report.totals()["requantized"] = t;
  }
  return commit_with_report(report, out, o.common);
}

std::string merge_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf, "wrote %s: %zu merged tensors, max |change| %.3g, %.2fs\n",
                output.c_str(), t["merged"].get<std::size_t>(), t["max_abs_change"].get<double>(),
                t["seconds"].get<double>());
  std::string line = buf;
  if (t.contains("requantized")) {
    const Json& q = t["requantized"];
    std::snprintf(
        buf, sizeof buf,
        "requantized %zu weights (%s): %.4g of the update survives, requantization "
        "error %.4g of the update\n",
        q["weights"].get<std::size_t>(), q["scheme"].get<std::string>().c_str(),
        q["delta_surviving_fraction"].is_number() ? q["delta_surviving_fraction"].get<double>()
                                                  : 0.0,
        q["delta_requant_error_rel"].is_number() ? q["delta_requant_error_rel"].get<double>()
                                                 : 0.0);
    line += buf;
  }
  return line;
}

}  // namespace ckpt
