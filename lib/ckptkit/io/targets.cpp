#include "ckptkit/io/targets.hpp"

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {
namespace {

bool contains_word(const std::string& module, std::string_view word) {
  // A component of the dotted name contains `word` (embed_tokens, wte, lm_head, ...).
  std::size_t start = 0;
  while (start <= module.size()) {
    std::size_t dot = module.find('.', start);
    if (dot == std::string::npos) dot = module.size();
    if (module.substr(start, dot - start).find(word) != std::string::npos) return true;
    start = dot + 1;
  }
  return false;
}

bool is_embedding_or_head(const std::string& module) {
  static const char* kWords[] = {"embed", "wte", "wpe", "lm_head", "embed_out", "output_layer"};
  for (const char* w : kWords)
    if (contains_word(module, w)) return true;
  const auto last =
      module.substr(module.rfind('.') == std::string::npos ? 0 : module.rfind('.') + 1);
  return last == "shared" || last == "output";
}

}  // namespace

bool model_type_uses_conv1d(const std::string& model_type) {
  const Architecture* a = find_architecture(model_type);
  return a && !a->conv1d.empty();
}

std::string TargetSelector::module_name(const std::string& tensor_name) {
  return tensor_name.ends_with(".weight") ? tensor_name.substr(0, tensor_name.size() - 7)
                                          : tensor_name;
}

std::vector<TargetSelector::Pattern> TargetSelector::compile(
    const std::vector<std::string>& patterns) {
  std::vector<Pattern> out;
  for (const auto& p : patterns) {
    if (p.empty()) continue;
    Pattern c;
    c.text = p;
    c.is_regex = p.find_first_of("^$*+?()[]{}|\\") != std::string::npos;
    if (c.is_regex) {
      std::string error;
      c.re = FullRegex::compile(p, &error);
      if (!c.re)
        fail(ErrorKind::Usage,
             "--target/--exclude: '" + printable(p) + "' is not a valid regex (" + error + ")");
    }
    out.push_back(std::move(c));
  }
  return out;
}

bool TargetSelector::matches(const std::vector<Pattern>& patterns, const std::string& module) {
  for (const auto& p : patterns) {
    if (p.is_regex) {
      if (p.re->full_match(module)) return true;
    } else if (module == p.text || module.ends_with("." + p.text)) {
      return true;
    }
  }
  return false;
}

TargetSelector::TargetSelector(TargetOptions options, const std::optional<nlohmann::json>& config)
    : target_(compile(options.target)),
      exclude_(compile(options.exclude)),
      forced_fan_in_fan_out_(options.fan_in_fan_out) {
  if (config && config->is_object() && config->contains("model_type") &&
      (*config)["model_type"].is_string())
    arch_ = find_architecture((*config)["model_type"].get<std::string>());
}

bool TargetSelector::fan_in_fan_out() const {
  return forced_fan_in_fan_out_.value_or(arch_ && !arch_->conv1d.empty());
}

bool TargetSelector::transposed(const std::string& module) const {
  if (forced_fan_in_fan_out_) return *forced_fan_in_fan_out_;
  return arch_ && is_conv1d_module(*arch_, module);
}

TargetDecision TargetSelector::decide(const TensorInfo& t) const {
  using Verdict = TargetDecision::Verdict;
  TargetDecision d;
  const std::string module = module_name(t.name);
  if (!exclude_.empty() && matches(exclude_, module)) {
    d.verdict = Verdict::Excluded;
    d.reason = "excluded by --exclude";
    return d;
  }
  if (!target_.empty()) {
    if (!matches(target_, module)) {
      d.reason = "not matched by --target";
      return d;
    }
    d.named = true;
    if (t.shape.size() != 2) {
      d.verdict = Verdict::NotMatrix;
      d.reason = "matched but " + std::to_string(t.shape.size()) + "-D, not a matrix";
      return d;
    }
  } else {
    if (t.shape.size() != 2) {
      d.reason = std::to_string(t.shape.size()) + "-D";
      return d;
    }
    if (!t.name.ends_with(".weight")) {
      d.reason = "not a .weight";
      return d;
    }
    if (is_embedding_or_head(module)) {
      d.reason = "embedding or output head";
      return d;
    }
    // The family's task heads (score, classifier, BERT's cls.predictions...) too: an adapter on
    // one would exist in the task-model layout only.
    if (arch_ && is_task_head(*arch_, module)) {
      d.reason = "task head";
      return d;
    }
  }
  if (!is_float(t.dtype)) {
    d.verdict = Verdict::NotFloat;
    d.reason = std::string(dtype_name(t.dtype)) + " is not a float type";
    return d;
  }
  d.verdict = Verdict::Selected;
  d.selected = true;
  d.transposed = transposed(module);
  d.reason = "linear weight";
  return d;
}

bool is_embedding_module(const std::string& module) {
  const auto dot = module.rfind('.');
  const std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
  return leaf.find("embed") != std::string::npos || leaf == "wte" || leaf == "wpe";
}

}  // namespace ckpt
