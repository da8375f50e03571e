// Which tensors a subcommand decomposes. Users name modules the PEFT way: a plain word such as
// "q_proj" matches every module whose name ends in ".q_proj" (or is exactly it); anything with
// regex characters is a regex matched against the whole module name (PEFT's re.fullmatch).
// A module name is the tensor name without its ".weight" suffix.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/io/architecture.hpp"
#include "ckptkit/io/regex.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace ckpt {

struct TargetOptions {
  std::vector<std::string> target;  // empty: the default selection
  std::vector<std::string> exclude;
  std::optional<bool> fan_in_fan_out;        // unset: per module, from config.json model_type
  TaskType task = TaskType::CausalLm;        // the model PEFT wraps (adapter module names)
  std::optional<std::string> module_prefix;  // overrides the architecture table's prefix
};

/// Why a tensor was or was not picked, for `inspect` and reports.
struct TargetDecision {
  enum class Verdict {
    Selected,
    Excluded,     ///< matched by --exclude
    NotTargeted,  ///< not named by --target, or left out by the default rule
    NotMatrix,    ///< named by --target but not 2-D
    NotFloat      ///< would be a target but its dtype is not a float type
  };
  Verdict verdict = Verdict::NotTargeted;
  bool selected = false;
  bool named = false;       // matched by an explicit --target pattern
  bool transposed = false;  // stored [in, out] (GPT-2 Conv1D): transpose to [out, in] for math
  std::string reason;
};

class TargetSelector {
 public:
  /// Throws Error(Usage) for a pattern that is not a valid regex.
  TargetSelector(TargetOptions options, const std::optional<nlohmann::json>& config);

  TargetDecision decide(const TensorInfo& t) const;
  /// What adapter_config.json says: --fan-in-fan-out, else whether the family has Conv1D layers.
  bool fan_in_fan_out() const;
  /// Whether one module is stored [in, out]: --fan-in-fan-out, else the family's Conv1D layers.
  bool transposed(const std::string& module) const;

  /// The module name of a weight tensor ("a.b.q_proj.weight" -> "a.b.q_proj").
  static std::string module_name(const std::string& tensor_name);

 private:
  struct Pattern {
    std::string text;
    bool is_regex = false;
    std::optional<FullRegex> re;  // set when is_regex
  };
  static std::vector<Pattern> compile(const std::vector<std::string>& patterns);
  static bool matches(const std::vector<Pattern>& patterns, const std::string& module);

  std::vector<Pattern> target_, exclude_;
  std::optional<bool> forced_fan_in_fan_out_;
  const Architecture* arch_ = nullptr;
};

/// True for an embedding module (its last name component holds "embed", or is wte / wpe).
bool is_embedding_module(const std::string& module);

/// True for model types whose linear layers are transformers Conv1D ([in, out] storage), from the
/// architecture table.
bool model_type_uses_conv1d(const std::string& model_type);

}  // namespace ckpt
