// Reading a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, either
// possibly .zst-compressed) into LoraConfig + LoraModule values (lora.hpp), and forming each
// module's dense delta in the layout of the base tensor it applies to:
//   linear:              ΔW = s·B·A          [out, in]   (base "<module>.weight")
//   linear, fan_in_fan_out: ΔW = (s·B·A)ᵀ    [in, out]   (GPT-2 Conv1D storage)
//   embedding:           ΔW = (s·B·A)ᵀ       [num_embeddings, dim]
// with s = scaling_for(module) (rank_pattern / alpha_pattern / use_rslora honoured).
// Used by analyze-spectrum --adapter and by merge.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/architecture.hpp"

namespace ckpt {

class Checkpoint;

/// An adapter as read from disk.
struct LoraAdapter {
  std::filesystem::path dir;      ///< the adapter directory
  std::filesystem::path weights;  ///< the safetensors file read
  LoraConfig config;
  std::vector<LoraModule> modules;  ///< in the order of their lora_A tensors in the file
  /// Full tensors PEFT saved beside the factors (modules_to_save heads, biases with bias="all"),
  /// named without "base_model.model." (e.g. "score.weight"), as stored.
  std::vector<OwnedTensor> saved;
  /// What PEFT would do differently from the file's face value (skipped layers, no-op factors,
  /// fan_in_fan_out overrides), one sentence each, for the report.
  std::vector<std::string> notes;
};

/// Parses adapter_config.json text. Requires peft_type "LORA" (Error(Unsupported) for other
/// PEFT types, Error(Format) for malformed JSON or fields of the wrong type); other fields
/// default as PEFT does (r 8, lora_alpha 8). `file` names the file in messages.
LoraConfig parse_lora_config(const std::string& text, const std::string& file);

/// Reads `dir` (or a path to its adapter_config.json). Pairs lora_A/lora_B (and
/// lora_embedding_A/B) tensors per module, strips the "base_model.model." prefix, checks shapes
/// (A [r, in], B [out, r], same r as rank_pattern says) and converts to f32 (F16/BF16 files
/// too). DoRA magnitude vectors [out] are read when use_dora is true; other full tensors are kept
/// in `saved`; modules outside layers_to_transform are dropped with a note, as PEFT never creates
/// them. lora_B biases and trainable-token deltas are refused (Error(Unsupported)); a module with
/// only A or only B, or inconsistent shapes, is Error(Format) naming the file and tensor.
LoraAdapter read_lora_adapter(const std::filesystem::path& dir);

/// The base tensor a module applies to (its `base_tensor`).
std::string lora_base_tensor(const LoraModule& m);
/// Shape of the module's dense delta in base storage layout (see the header comment).
std::vector<std::int64_t> lora_delta_shape(const LoraModule& m, bool fan_in_fan_out);
/// The dense delta, row-major in base storage layout, computed in f32 (Eigen GEMM).
std::vector<float> lora_delta(const LoraAdapter& adapter, const LoraModule& m);

/// Resolves every module against `base` (adapters/base_match.hpp: names with or without the
/// prefix, PEFT's Conv1D orientation) and checks the delta's shape: Error(Format)
/// "<adapter file>: tensor '<module>': ..." for the first that does not fit.
void resolve_lora_adapter(LoraAdapter& adapter, const Checkpoint& base, const ModuleNaming& naming);

}  // namespace ckpt
