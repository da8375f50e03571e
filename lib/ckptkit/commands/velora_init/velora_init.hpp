// `ckptkit velora-init`: VeLoRA projection vectors from an activation dump (module name →
// [tokens, D] inputs of the linear layers), written under the keys PEFT saves its
// `lora_velora_embed` buffer with, plus fidelity, a memory estimate and an optional M sweep.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/analysis/velora.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct VeloraInitOptions {
  /// Activation safetensors files (or checkpoint dirs); several are concatenated along tokens and
  /// must hold the same module names.
  std::vector<std::filesystem::path> inputs;
  CommonOptions common;  ///< output, force, targets (--target/--exclude), exec, report_path, argv
  std::int64_t groups = 32;  ///< M, PEFT's num_groups
  velora::Init init = velora::Init::BatchAverage;
  double scale = 1.0;  ///< PEFT's velora_config.scale, copied into the config
  bool sweep = false;  ///< also evaluate M = 1, 2, 4, ..., D and write sweep.html / sweep.md
  std::int64_t batch = 8, seq = 2048;  ///< for the memory estimate
  std::int64_t act_bytes =
      2;                     ///< bytes per saved input element without VeLoRA (bf16/fp16 training)
  std::int64_t z_bytes = 2;  ///< bytes per z (fp16 in the official code)
  std::string prefix = "base_model.model.";  ///< key prefix PEFT's state dict uses
  /// A PEFT LoRA adapter to extend: OUT/adapter/ is that adapter with a vector per LoRA module and
  /// velora_config in its adapter_config.json, which PeftModel.from_pretrained loads as is.
  std::optional<std::filesystem::path> adapter;
};

/// Suffix of the vector keys: PEFT's BufferDict name, adapter name stripped as PEFT saves it.
inline constexpr const char* kVeloraKeySuffix = ".lora_velora_embed";

/// Writes OUT/velora_embed.safetensors, OUT/velora_config.json, OUT/report.json (and with sweep
/// OUT/sweep.html, OUT/sweep.md; with an adapter OUT/adapter/) atomically. Returns the report; its
/// "markdown" entry (not in report.json) is the table the CLI prints. Bad input →
/// Error(Usage/Format) naming file and module.
Json run_velora_init(const VeloraInitOptions& options);

/// What velora-init prints after a run: the Markdown tables, then the files written.
std::string velora_init_summary(const Json& report, const std::string& output);

}  // namespace ckpt
