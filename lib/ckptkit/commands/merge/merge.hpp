// `ckptkit merge`: fold adapters into a base checkpoint, and convert a fine-tuned PiSSA / SORSA
// adapter into a plain LoRA for the original base (--to-lora).
//   merge BASE ADAPTER... -o OUT   OUT = BASE with W ← W + Σ_k w_k·ΔW_k for every adapted W,
//                                  streamed tensor by tensor; untouched tensors copied byte for
//                                  byte. BASE may be an svd-init / mpo-init output directory
//                                  (residual/ + adapter/) given alone. A quantized base is
//                                  dequantized; --requantize quantizes each merged weight
//                                  again (untouched ones stay as stored).
//   merge --to-lora BASE DORA -o OUT [--rank R]
//                                  OUT = a plain LoRA closest (rank R) to the DoRA merge's change.
//   merge --to-lora INIT TRAINED -o OUT [--rank R']
//                                  OUT = a PEFT LoRA adapter with ΔW = s(B·A − B₀·A₀): exact at
//                                  rank 2r (PEFT's rewrite), or re-truncated to R' by an SVD of
//                                  the factored form, reporting the energy dropped per layer.
#pragma once

#include <optional>

#include "ckptkit/engine/options.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct MergeOptions {
  std::filesystem::path base;                   ///< checkpoint (or svd-init/mpo-init output)
  std::vector<std::filesystem::path> adapters;  ///< PEFT LoRA, SORSA or MPO adapter directories
  std::vector<double> weights;                  ///< w_k per adapter; empty: 1 for each
  std::optional<DType> dtype;                   ///< output float dtype; default: each tensor's own
  CommonOptions common;                         ///< --target/--exclude are not used by merge
  /// A quantized base: quantize each merged weight again into this format (untouched quantized
  /// weights stay as stored) and report how much of each update survives.
  std::optional<QuantFormatRequest> requantize;
  /// bnb_4bit_compute_dtype of a rewritten quantization_config; empty: the base's (bfloat16).
  std::string compute_dtype;
  /// With requantize: the full-precision weights the quantized base came from, to report the
  /// error against merging into them instead.
  std::optional<std::filesystem::path> original;
};

/// Runs the merge; returns the report (also written to OUT/report.json). Every check (adapter
/// formats, modules and shapes against the base, weights count) happens before any output
/// exists; a merged value that overflows the output dtype is Error(Format) naming the module, and
/// nothing is left on disk.
Json run_merge(const MergeOptions& options);

struct ToLoraOptions {
  std::filesystem::path init_adapter;     ///< the PiSSA / SORSA adapter as svd-init wrote it
  std::filesystem::path trained_adapter;  ///< the same adapter after fine-tuning
  std::optional<int> rank;                ///< re-truncate to this rank; default: exact, 2r
  DType adapter_dtype = DType::F32;
  std::string base_model_name_or_path;  ///< written into adapter_config.json (the original base)
  CommonOptions common;
};

/// Writes OUT/adapter_model.safetensors + adapter_config.json (+ report.json) and returns the
/// report. Both adapters must have the same modules, shapes, ranks and scalings.
Json run_to_lora(const ToLoraOptions& options);

/// True for a PEFT LoRA adapter directory with use_dora.
bool is_dora_adapter(const std::filesystem::path& dir);
/// --to-lora BASE DORA_ADAPTER (init_adapter is the base checkpoint): the DoRA adapter as a
/// plain LoRA of rank --rank (default: its r), the best rank-k approximation of W' − W with the
/// energy it drops per module (dora_to_lora.cpp).
Json run_dora_to_lora(const ToLoraOptions& options);

/// The one-line summaries printed after a run (not under --quiet or --json).
std::string merge_summary(const Json& report, const std::string& output);
std::string to_lora_summary(const Json& report, const std::string& output);

}  // namespace ckpt
