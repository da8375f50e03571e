// What transformers knows about a model family, and the one rule that maps a checkpoint's tensor
// names to the module names of the task model PEFT wraps (docs/architectures.md).
//
// Hub checkpoints come in two layouts: saved from a task model
// (`transformer.h.0.attn.c_attn.weight` for GPT2LMHeadModel) or from the bare base model
// (`h.0.attn.c_attn.weight`, as `gpt2` and `bigscience/bloom-560m` are stored). transformers loads
// both by adding or stripping the class's `base_model_prefix`; PEFT names adapter modules after the
// model it wraps (`base_model.model.` + the task model's module path). So an adapter we write uses
// the task model's names whatever the layout, and an adapter we read resolves to the checkpoint's
// tensors with or without the prefix.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckpt {

/// PEFT's TaskType: which transformers class PEFT wraps (AutoModelFor...).
enum class TaskType { CausalLm, SeqCls, TokenCls, QuestionAns, Seq2SeqLm, FeatureExtraction };

/// "CAUSAL_LM", "SEQ_CLS", ... as PEFT spells them.
std::string_view task_type_name(TaskType t);
/// Parses PEFT's spelling (case-insensitive); nullopt for anything else.
std::optional<TaskType> parse_task_type(std::string_view s);

/// One model family as transformers' modeling_<model_type>.py defines it.
struct Architecture {
  std::string_view model_type;
  /// `base_model_prefix`: the attribute of every task model that holds the base model.
  std::string_view prefix;
  /// The attribute in the *ForQuestionAnswering class when it differs (the llama family keeps
  /// `transformer` "for BC"); empty when it is `prefix`.
  std::string_view qa_prefix;
  /// Leaf names of modules that are transformers Conv1D (weight stored [in, out]).
  std::span<const std::string_view> conv1d;
  /// Head modules of the task models (outside the base model): lm_head, score, classifier, ...
  std::span<const std::string_view> heads;
  /// Where this was read: transformers' modeling file.
  std::string_view source;
};

/// True for a head module of `arch`'s task models (`module` as the task model names it: the
/// head itself or a module under it, e.g. "cls.predictions.decoder").
bool is_task_head(const Architecture& arch, std::string_view module);

/// True when `arch` builds `module` (any path; its last component decides) as transformers'
/// Conv1D, whose weight is stored [in, out].
bool is_conv1d_module(const Architecture& arch, std::string_view module);

/// Every family in the table, in a fixed order.
std::span<const Architecture> architectures();
/// nullptr for a model_type not in the table.
const Architecture* find_architecture(std::string_view model_type);

/// How one checkpoint's names relate to the task model's, decided once per run.
struct ModuleNaming {
  std::string model_type;  ///< config.json model_type ("" when there is none)
  const Architecture* arch = nullptr;
  TaskType task = TaskType::CausalLm;
  std::string prefix;         ///< the base model's attribute in the task model ("" if none)
  std::string stored_prefix;  ///< the prefix the checkpoint's tensors carry ("" if prefix-less)
  /// What was assumed, for the report and for messages: one sentence.
  std::string assumption;
  /// True when the family is unknown and no --module-prefix was given.
  bool unknown = false;

  /// The task model's name of a checkpoint module (what PEFT's keys hold after
  /// "base_model.model.").
  std::string peft_module(std::string_view checkpoint_module) const;
  /// The checkpoint module names a PEFT module name may stand for, most likely first (the name
  /// itself, then without / with the prefix); no duplicates.
  std::vector<std::string> checkpoint_candidates(std::string_view peft_module) const;
  /// True when transformers builds this module as Conv1D (storage [in, out]); nullopt when the
  /// family is unknown.
  std::optional<bool> is_conv1d(std::string_view module) const;
  /// True for a head module of the family's task models (its full name after any prefix).
  bool is_head(std::string_view module) const;
};

/// The naming of a checkpoint with `tensor_names`, `config` (config.json, if any) and the user's
/// choices. `module_prefix` (--module-prefix) overrides the table's prefix; "" says the model has
/// none.
ModuleNaming module_naming(const std::vector<std::string>& tensor_names,
                           const std::optional<nlohmann::json>& config, TaskType task,
                           const std::optional<std::string>& module_prefix = std::nullopt);

}  // namespace ckpt
