// Writing adapters: the PEFT LoRA directory (adapter_model.safetensors + adapter_config.json, as
// PEFT's save_pretrained writes them, see lora.hpp) and ckptkit's SORSA adapter format
// (docs/formats-svd.md), which PEFT lacks.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/core/dtype.hpp"

namespace ckpt {

/// Version of the SORSA adapter format written by write_sorsa_adapter.
inline constexpr int kSorsaFormatVersion = 1;

/// One SORSA module: sorsa_A = V_pᵀ [r, in], sorsa_S = S_p [r], sorsa_B = U_p [out, r], f32.
/// ΔW = s · sorsa_B · diag(sorsa_S) · sorsa_A.
struct SorsaModule {
  std::string module;
  int rank = 0;
  std::int64_t in = 0, out = 0;
  std::vector<float> A, S, B;
};

/// PEFT's config dict for `config` (sorted keys, as json.dumps(sort_keys=True) writes it):
/// peft_type LORA, r, lora_alpha, target_modules, rank_pattern, alpha_pattern, fan_in_fan_out,
/// use_rslora, init_lora_weights true, bias "none", lora_dropout 0, task_type, ...
/// `config.extra` entries are written over the defaults.
nlohmann::json lora_config_json(const LoraConfig& config);

/// The safetensors keys of a module: {A, B} = base_model.model.<m>.lora_A.weight / lora_B.weight
/// (lora_embedding_A / lora_embedding_B without ".weight" for embeddings).
std::pair<std::string, std::string> lora_keys(const LoraModule& m);

/// Writes `dir`/adapter_model.safetensors (metadata {"format": "pt"}, tensors in `modules` order,
/// stored as `dtype`) and `dir`/adapter_config.json. `dir` must exist.
void write_lora_adapter(const std::filesystem::path& dir, const LoraConfig& config,
                        const std::vector<LoraModule>& modules, DType dtype = DType::F32);

/// Writes the SORSA adapter: adapter_model.safetensors with keys base_model.model.<m>.sorsa_A,
/// .sorsa_S, .sorsa_B and metadata {"format": "pt", "ckptkit_format": "sorsa", "format_version"},
/// and adapter_config.json {"ckptkit_format": "sorsa", "format_version": 1, r, alpha, ...}.
void write_sorsa_adapter(const std::filesystem::path& dir, const LoraConfig& config,
                         const std::vector<SorsaModule>& modules, DType dtype = DType::F32);

/// A number as PEFT's configs hold it: lora_alpha is declared int, so integral values are JSON
/// integers, others floats.
nlohmann::json peft_json_number(double v);

/// The target_modules list for a set of adapted module names: their leaf names (sorted, unique)
/// when every module of `all_candidates` carrying such a leaf name is adapted, else the full
/// module names (so that PEFT adapts exactly these modules and nothing more).
std::vector<std::string> target_modules_for(const std::vector<std::string>& adapted,
                                            const std::vector<std::string>& all_candidates);

}  // namespace ckpt
