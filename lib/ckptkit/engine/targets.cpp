#include "ckptkit/engine/targets.hpp"

#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/formats/quant_layout.hpp"

namespace ckpt {
namespace {

/// Quantized weights in a layout ckptkit reads (formats/quant_layout), or a config saying the
/// model is quantized in one it does not (GPTQ, AWQ, ...).
bool looks_quantized(const Checkpoint& in) {
  return (in.config() && in.config()->contains("quantization_config")) ||
         is_quantized_checkpoint(in);
}

/// Why nothing was selected, with the fix: a quantized input, a tensor name given for a module,
/// or a typo (the nearest module leaf names the checkpoint has).
std::string nothing_selected(const Checkpoint& in, const TargetOptions& options,
                             const TargetPolicy& policy) {
  if (looks_quantized(in) && !policy.quantized)
    return "no float linear weight: a quantized checkpoint; dequantize it first (ckptkit "
           "quantize --dequantize " +
           in.path().string() + " -o DIR)";
  if (options.target.empty()) return "no linear weight to decompose";
  std::set<std::string> leaves;  // last name component of every 2-D weight's module
  for (const auto& t : in.tensors())
    if (t.info.shape.size() == 2 && t.info.name.ends_with(".weight")) {
      const std::string m = TargetSelector::module_name(t.info.name);
      leaves.insert(m.substr(m.rfind('.') + 1));
    }
  std::string hint;
  for (const auto& p : options.target) {
    if (p.ends_with(".weight") || p.ends_with(".bias")) {
      hint = "; --target names modules, not tensors: '" + p.substr(0, p.rfind('.')) + "'";
      break;
    }
    const std::string c = closest(p, {leaves.begin(), leaves.end()});
    if (!c.empty() && c != p) {
      hint = "; did you mean '" + c + "'?";
      break;
    }
  }
  std::string list;
  std::size_t shown = 0;
  for (const auto& l : leaves) {
    if (shown++ == 16) {
      list += ", ...";
      break;
    }
    list += (list.empty() ? "" : ", ") + l;
  }
  return "--target matches no 2-D float weight" + hint + " (modules here end in: " + list + ")";
}

}  // namespace

ModuleNaming checkpoint_naming(const Checkpoint& in, const TargetOptions& options) {
  std::vector<std::string> names;
  names.reserve(in.tensors().size());
  for (const auto& t : in.tensors())
    names.push_back(t.info.name);
  return module_naming(names, in.config(), options.task, options.module_prefix);
}

TargetSelection select_targets(const Checkpoint& in, const TargetOptions& options,
                               const TargetPolicy& policy) {
  using Verdict = TargetDecision::Verdict;
  const TargetSelector selector(options, in.config());
  TargetSelection sel;
  sel.fan_in_fan_out = selector.fan_in_fan_out();
  sel.naming = checkpoint_naming(in, options);
  for (const auto& t : in.tensors()) {
    const QuantizedGroup* group =
        policy.quantized ? policy.quantized->group_of_any(t.info.name) : nullptr;
    if (group && group->weight != t.info.name) continue;  // a companion of a quantized weight
    TensorInfo info = t.info;
    if (group) {
      info.dtype = policy.quantized->original_dtype(in, *group);
      info.shape = policy.quantized->logical_shape(group->weight);
    }
    const TargetDecision d = selector.decide(info);
    const std::string module = TargetSelector::module_name(t.info.name);
    const bool matrix = info.shape.size() == 2;
    if (matrix) sel.candidates.push_back(sel.naming.peft_module(module));
    const bool unfit =
        d.named && (d.verdict == Verdict::NotMatrix || d.verdict == Verdict::NotFloat);
    if (unfit && policy.unfit_is_error) {
      if (d.verdict == Verdict::NotMatrix)
        fail(ErrorKind::Usage, located(in.file_of(t), t.info.name,
                                       "matched by --target but is " +
                                           std::to_string(info.shape.size()) + "-D, not a matrix"));
      fail(ErrorKind::Unsupported,
           located(in.file_of(t), t.info.name, "matched by --target but " + d.reason));
    }
    if (unfit) sel.skipped.push_back({&t, d.reason});
    if (!d.selected) {
      if (matrix && t.info.name.ends_with(".weight")) sel.left_alone.push_back(module);
      continue;
    }
    TargetWeight tg{
        &t,   module, sel.naming.peft_module(module), d.transposed, is_embedding_module(module),
        info, group};
    if (tg.embedding && !policy.embeddings)
      fail(ErrorKind::Usage,
           located(in.file_of(t), t.info.name,
                   "is an embedding: " + policy.command + " adapts linear weights only"));
    sel.targets.push_back(std::move(tg));
  }
  if (sel.targets.empty() && policy.require_some)
    fail(ErrorKind::Usage, located(in.path().string(), "", nothing_selected(in, options, policy)));
  return sel;
}

}  // namespace ckpt
