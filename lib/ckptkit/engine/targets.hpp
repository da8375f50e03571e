// The one rule by which every per-layer command picks the weights it works on: the --target /
// --exclude patterns (io/targets.hpp) applied to a checkpoint, with what a command may differ in
// stated as a policy, never as a second copy of the loop.
#pragma once

#include <string>
#include <vector>

#include "ckptkit/formats/quantized_base.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/targets.hpp"

namespace ckpt {

struct TargetPolicy {
  std::string command;  ///< for messages ("lq-decompose adapts linear weights only")
  /// A tensor --target names that cannot be a target (not 2-D, not a float type): an error naming
  /// it (commands that write weights) or a `skipped` entry (analysis reports it and goes on).
  bool unfit_is_error = true;
  /// Embeddings may be targeted (PEFT LoRA on nn.Embedding); false: an error naming the tensor.
  bool embeddings = true;
  /// No target at all is an error naming the checkpoint.
  bool require_some = true;
  /// The input's quantized weights (formats/quantized_base), when the command reads them: each
  /// is judged by the float weight it dequantizes to, and its companions are never targets.
  /// Null: a quantized weight is an unfit tensor like any other integer one.
  const QuantizedBase* quantized = nullptr;
};

/// One weight a command works on.
struct TargetWeight {
  const CheckpointTensor* tensor = nullptr;
  std::string module;  ///< tensor name without ".weight"
  /// The module's name in the task model PEFT wraps (adapter keys, rank_pattern, report rows).
  std::string adapter_module;
  bool conv1d = false;     ///< stored [in, out] (transformers Conv1D, fan_in_fan_out)
  bool embedding = false;  ///< an embedding module (its delta is (B·A)ᵀ in PEFT)
  /// The weight as the command sees it: `tensor`'s name, dtype and shape, or for a quantized
  /// weight those it had before quantization.
  TensorInfo info;
  const QuantizedGroup* quantized = nullptr;  ///< the quantized weight `tensor` stores, if any
};

/// A tensor --target named that cannot be a target, when the policy does not make it an error.
struct SkippedTarget {
  const CheckpointTensor* tensor = nullptr;
  std::string reason;
};

struct TargetSelection {
  std::vector<TargetWeight> targets;   ///< checkpoint order
  std::vector<SkippedTarget> skipped;  ///< checkpoint order
  /// Adapter module names of every 2-D tensor (for target_modules).
  std::vector<std::string> candidates;
  /// Linear weights (2-D ".weight" tensors) left alone: what a quantized output keeps in float
  /// (transformers' llm_int8_skip_modules).
  std::vector<std::string> left_alone;
  bool fan_in_fan_out = false;  ///< Conv1D storage, from --fan-in-fan-out or config.json
  ModuleNaming naming;          ///< checkpoint names -> task model names
};

/// How `in`'s tensor names map to the task model's (architecture table, --task-type,
/// --module-prefix).
ModuleNaming checkpoint_naming(const Checkpoint& in, const TargetOptions& options);

/// Applies `options` to every tensor of `in` under `policy`. Errors (Usage, or Unsupported for a
/// named non-float tensor) name the file and the tensor, before any output exists.
TargetSelection select_targets(const Checkpoint& in, const TargetOptions& options,
                               const TargetPolicy& policy);

}  // namespace ckpt
