// `ckptkit export-gguf`: a PEFT LoRA adapter (any tool's, svd-init's and lq-decompose's included;
// SORSA too) as a llama.cpp GGUF LoRA adapter for a llama-family base, exact under llama.cpp's
// per-tensor scale alpha / rank: per-module ranks and alphas (rank_pattern, alpha_pattern,
// rsLoRA) are folded into lora_b, and lora_b takes the q/k row permutation llama.cpp's converter
// applies to the base. Output: one .gguf file, written atomically. docs/export-gguf.md.
#pragma once

#include <optional>

#include "ckptkit/engine/options.hpp"
#include "ckptkit/formats/gguf.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct ExportGgufOptions {
  std::filesystem::path adapter;  ///< a PEFT LoRA (or SORSA) adapter directory or output root
  std::filesystem::path base;     ///< the HF checkpoint it adapts (config.json and shapes)
  CommonOptions common;           ///< common.output is the .gguf file
  gguf::TensorType outtype = gguf::TensorType::F32;
  std::optional<double> alpha;  ///< adapter.lora.alpha; default: the most common scale · rank
};

/// Writes the GGUF file and returns the report (written only to --report, and printed by --json).
/// Every check (adapter format, architecture, module names, shapes) happens before anything is
/// written: Error(Usage) naming the file and module.
Json run_export_gguf(const ExportGgufOptions& options);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string export_gguf_summary(const Json& report, const std::string& output);

}  // namespace ckpt
