// The PEFT LoRA adapter as ckptkit reads and writes it (see docs/formats.md and
// ../shared/research/peft-anchors.md §1.13-1.15):
//   adapter_model.safetensors  keys base_model.model.<module>.lora_A.weight  [r, in]
//                                   base_model.model.<module>.lora_B.weight  [out, r]
//                              (embeddings: .lora_embedding_A [r, num_embeddings],
//                               .lora_embedding_B [embedding_dim, r], no ".weight")
//                              __metadata__ {"format": "pt"}
//   adapter_config.json        peft_type "LORA", r, lora_alpha, target_modules, rank_pattern,
//                              alpha_pattern, use_rslora, fan_in_fan_out, init_lora_weights, ...
// The delta of a module is  ΔW = s · B · A  with s = alpha / r (alpha / √r with rsLoRA), where r
// and alpha come from rank_pattern / alpha_pattern when a key matches the module (PEFT's
// regex-suffix rule `(.*\.)?(key)$`), else from r / lora_alpha. With fan_in_fan_out the stored
// weight is ΔWᵀ.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"

namespace ckpt {

/// The fields of adapter_config.json that change the numbers, plus the rest kept verbatim.
struct LoraConfig {
  int r = 8;
  double lora_alpha = 8;
  bool use_rslora = false;
  bool fan_in_fan_out = false;
  std::vector<std::string> target_modules;  // module suffixes (or one regex string in PEFT)
  std::vector<std::pair<std::string, int>> rank_pattern;      // key -> rank, in file order
  std::vector<std::pair<std::string, double>> alpha_pattern;  // key -> alpha (first match wins)
  std::string base_model_name_or_path;
  bool use_dora = false;
  /// layers_to_transform / layers_pattern: PEFT creates LoRA layers only in these layers.
  std::vector<int> layers_to_transform;
  std::vector<std::string> layers_pattern;
  nlohmann::ordered_json extra =
      nlohmann::ordered_json::object();  // other keys, written back as read

  /// The (rank, alpha) PEFT would use for `module` (name without "base_model.model." and
  /// ".weight").
  std::pair<int, double> rank_alpha_for(const std::string& module) const;
  /// s = alpha / r, or alpha / √r with rsLoRA.
  double scaling_for(const std::string& module) const;
};

/// Does a rank_pattern/alpha_pattern key match `module` by PEFT's rule
/// re.match(rf"(.*\.)?({key})$")?
bool peft_pattern_matches(const std::string& key, const std::string& module);

/// One adapted module: A [r, in] and B [out, r] as f32, row-major.
struct LoraModule {
  std::string module;      // e.g. "model.decoder.layers.0.self_attn.q_proj"
  bool embedding = false;  // lora_embedding_A/B
  int rank = 0;
  std::int64_t in = 0, out = 0;
  std::vector<float> A;          // rank * in
  std::vector<float> B;          // out * rank
  std::vector<float> magnitude;  // DoRA's lora_magnitude_vector [out]; empty for plain LoRA
  // Where the delta lands (set when read, refined by resolve_lora_adapter against a base):
  std::string base_tensor;  // "<module>.weight" in the base checkpoint's own names
  bool transposed = false;  // delta stored [in, out] (Conv1D fan_in_fan_out, embeddings)
};

/// The layer index PEFT reads from a module name for layers_to_transform
/// (peft/tuners/tuners_utils.py check_target_module_exists): the number after the last
/// "<pattern>." component (any component when `patterns` is empty); nullopt when there is none.
std::optional<int> peft_layer_index(const std::string& module,
                                    const std::vector<std::string>& patterns);

/// The safetensors key prefix PEFT uses on disk.
inline constexpr const char* kPeftPrefix = "base_model.model.";

}  // namespace ckpt
