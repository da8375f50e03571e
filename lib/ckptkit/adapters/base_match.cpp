#include "ckptkit/adapters/base_match.hpp"

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"

namespace ckpt {

std::optional<std::string> find_base_tensor(const std::string& module, const std::string& suffix,
                                            const Checkpoint& base, const ModuleNaming& naming,
                                            const LogicalShapes* logical) {
  for (const auto& c : naming.checkpoint_candidates(module)) {
    const std::string name = c + suffix;
    if (base.find(name) || (logical && logical->count(name))) return name;
  }
  return std::nullopt;
}

std::string match_base_tensor(const std::string& adapter_file, const std::string& module,
                              const std::string& suffix, const Checkpoint& base,
                              const ModuleNaming& naming, const LogicalShapes* logical) {
  if (auto found = find_base_tensor(module, suffix, base, naming, logical)) return *found;
  std::string tried;
  for (const auto& c : naming.checkpoint_candidates(module))
    tried += (tried.empty() ? "'" : ", '") + c + suffix + "'";
  fail(ErrorKind::Format, located(adapter_file, module,
                                  "no base tensor " + tried + " in " + base.path().string() + " (" +
                                      naming.assumption + "): adapter for another model?"));
}

bool peft_transposed(const ModuleNaming& naming, const std::string& checkpoint_module,
                     bool adapter_says, const std::string& module, std::string* note) {
  const std::optional<bool> conv1d = naming.is_conv1d(checkpoint_module);
  if (!conv1d || *conv1d == adapter_says) return adapter_says;
  // PEFT's dispatch_default (peft/tuners/lora/layer.py) warns and overrides the config.
  if (note)
    *note = module + ": fan_in_fan_out is " + (adapter_says ? "true" : "false") +
            " but the target is " + (*conv1d ? "Conv1D" : "nn.Linear") + " in " +
            naming.model_type + "; set to " + (*conv1d ? "true" : "false") + " as PEFT does";
  return *conv1d;
}

}  // namespace ckpt
