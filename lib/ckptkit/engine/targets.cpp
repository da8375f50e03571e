#include "ckptkit/engine/targets.hpp"

#include "ckptkit/core/error.hpp"

namespace ckpt {

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
    const TargetDecision d = selector.decide(t.info);
    const std::string module = TargetSelector::module_name(t.info.name);
    const bool matrix = t.info.shape.size() == 2;
    if (matrix) sel.candidates.push_back(sel.naming.peft_module(module));
    const bool unfit =
        d.named && (d.verdict == Verdict::NotMatrix || d.verdict == Verdict::NotFloat);
    if (unfit && policy.unfit_is_error) {
      if (d.verdict == Verdict::NotMatrix)
        fail(ErrorKind::Usage,
             located(in.file_of(t), t.info.name,
                     "matched by --target but is " + std::to_string(t.info.shape.size()) +
                         "-D, not a matrix"));
      fail(ErrorKind::Unsupported,
           located(in.file_of(t), t.info.name, "matched by --target but " + d.reason));
    }
    if (unfit) sel.skipped.push_back({&t, d.reason});
    if (!d.selected) {
      if (matrix && t.info.name.ends_with(".weight")) sel.left_alone.push_back(module);
      continue;
    }
    TargetWeight tg{&t, module, sel.naming.peft_module(module), d.transposed,
                    is_embedding_module(module)};
    if (tg.embedding && !policy.embeddings)
      fail(ErrorKind::Usage,
           located(in.file_of(t), t.info.name,
                   "is an embedding: " + policy.command + " adapts linear weights only"));
    sel.targets.push_back(std::move(tg));
  }
  if (sel.targets.empty() && policy.require_some)
    fail(ErrorKind::Usage,
         located(in.path().string(), "",
                 options.target.empty() ? "no linear weight to decompose"
                                        : "--target matches no 2-D float weight"));
  return sel;
}

}  // namespace ckpt
