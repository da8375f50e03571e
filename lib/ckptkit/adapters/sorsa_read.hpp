// Reading ckptkit's SORSA adapter (docs/formats-svd.md, written by write_sorsa_adapter):
//   adapter_model.safetensors  base_model.model.<module>.sorsa_A [r, in], .sorsa_S [r],
//                              .sorsa_B [out, r]
//   adapter_config.json        {"ckptkit_format": "sorsa", "format_version": 1, r, alpha,
//                               use_rslora, rank_pattern, alpha_pattern, fan_in_fan_out, ...}
// ΔW = s · sorsa_B · diag(sorsa_S) · sorsa_A, s from r / alpha exactly as for LoRA.
#pragma once

#include <filesystem>
#include <vector>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/lora_write.hpp"

namespace ckpt {

/// A SORSA adapter as read from disk; `config.lora_alpha` holds the format's "alpha".
struct SorsaAdapter {
  std::filesystem::path dir;      ///< the adapter directory
  std::filesystem::path weights;  ///< the safetensors file read
  LoraConfig config;
  std::vector<SorsaModule> modules;  ///< in the order of their sorsa_A tensors in the file
};

/// True when `dir`/adapter_config.json declares ckptkit_format "sorsa".
bool is_sorsa_adapter(const std::filesystem::path& dir);

/// Reads a SORSA adapter directory, checking every module has A [r, in], S [r], B [out, r] with
/// r as the config says. Error(Format) naming the file and tensor on anything inconsistent;
/// Error(Unsupported) for a format_version newer than kSorsaFormatVersion.
SorsaAdapter read_sorsa_adapter(const std::filesystem::path& dir);

/// The same deltas as a PEFT LoRA at the same rank and scaling:
/// lora_A = diag(√S)·sorsa_A, lora_B = sorsa_B·diag(√S) (exact up to f32 rounding).
LoraAdapter sorsa_as_lora(const SorsaAdapter& a);

}  // namespace ckpt
