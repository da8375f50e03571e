// ckptkit's MPO (DoTA) adapter format, version 1 (docs/mpo-init.md, "Adapter format"):
//   adapter_model.safetensors  base_model.model.<module>.mpo_core.<k>  [r_{k-1}, i_k, j_k, r_k]
//                              __metadata__ {"format": "pt", "ckptkit_format": "mpo",
//                                            "format_version": "1"}
//   adapter_config.json        {"peft_type": "ckptkit-mpo", "ckptkit_format": "mpo",
//                               "format_version": 1, "contraction": ..., "trainable": "all",
//                               "modules": {<module>: {shape, row_shape, col_shape, bonds,
//                                                      trainable_cores, central_core}}, ...}
// The cores contract (mpo_contract) to the [out, in] weight: rows = ∏ row_shape = out_features.
// With fan_in_fan_out (GPT-2 Conv1D) the stored base weight is the transpose of that matrix.
// The full weight is  W = residual + MPO(cores)  where the residual checkpoint is the base model.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/decompose/mpo.hpp"

namespace ckpt {

/// Version of the MPO adapter format written by write_mpo_adapter (and the newest read).
inline constexpr int kMpoFormatVersion = 1;
/// adapter_config.json "peft_type" of the format (not a PEFT type: PEFT refuses it by design).
inline constexpr const char* kMpoPeftType = "ckptkit-mpo";

/// One adapted module: its MPO in the [out, in] orientation.
struct MpoModule {
  std::string module;  // e.g. "model.decoder.layers.0.self_attn.q_proj" (no prefix, no ".weight")
  std::int64_t rows = 0, cols = 0;  // out_features, in_features
  MpoShape shape;
  std::vector<MpoCore> cores;
  std::vector<int> trainable_cores;  // indices of the cores that train
};

struct MpoAdapter {
  std::string base_model_name_or_path;  // the residual checkpoint
  std::string trainable = "all";        // "all" (DoTA) or "auxiliary" (MPOP: all but central)
  std::string residual_quantization;    // "" or "nf4" (QDoTA)
  bool fan_in_fan_out = false;
  std::vector<MpoModule> modules;
};

/// The central core mpo_lab freezes for "auxiliary" training: (N-1)/2.
inline std::size_t mpo_central_core(std::size_t cores) {
  return (cores - 1) / 2;
}
/// Core indices that train for `trainable` ("all" or "auxiliary"); Error(Usage) otherwise or when
/// "auxiliary" leaves nothing to train (one core).
std::vector<int> mpo_trainable_cores(std::size_t cores, const std::string& trainable);

/// "base_model.model.<module>.mpo_core.<k>".
std::string mpo_core_key(const std::string& module, std::size_t k);

/// adapter_config.json of `adapter` (format version, contraction convention, shapes, bonds).
nlohmann::ordered_json mpo_config_json(const MpoAdapter& adapter);

/// Writes `dir`/adapter_model.safetensors (cores as `dtype`) and `dir`/adapter_config.json.
void write_mpo_adapter(const std::filesystem::path& dir, const MpoAdapter& adapter, DType dtype);

/// Reads an adapter written by write_mpo_adapter, checking every core's shape against the config.
/// Error(Format) naming the file and tensor on anything inconsistent; Error(Unsupported) for a
/// newer format version.
MpoAdapter read_mpo_adapter(const std::filesystem::path& dir);

/// True when `dir`/adapter_config.json declares the MPO format.
bool is_mpo_adapter(const std::filesystem::path& dir);

/// The module's dense delta in the stored orientation of the base weight ([out, in], or [in, out]
/// when `fan_in_fan_out`), row-major.
std::vector<float> mpo_module_delta(const MpoModule& m, bool fan_in_fan_out);

}  // namespace ckpt
