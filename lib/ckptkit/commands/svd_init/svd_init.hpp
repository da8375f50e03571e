// `ckptkit svd-init`: PiSSA / MiLoRA / SORSA adapters with a residual checkpoint, or LoRA
// extraction from a fine-tune (--base), per target weight, streamed through the engine.
// Output (one directory, appearing atomically):
//   OUT/adapter/   adapter_model.safetensors + adapter_config.json (PEFT LoRA; SORSA:
//                  docs/formats-svd.md)
//   OUT/residual/  the input checkpoint with every target W replaced by W − s·B·A (not for
//                  --base); quantized (QPiSSA) with --quantize-residual or a quantized input
//   OUT/report.json
#pragma once

#include <optional>

#include "ckptkit/decompose/pissa.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct SvdInitOptions {
  std::filesystem::path input;                // the model (the fine-tune with --base)
  std::optional<std::filesystem::path> base;  // extraction: decompose input − base
  CommonOptions common;
  SvdInitMethod method = SvdInitMethod::Pissa;  // Extract is implied by `base`
  std::optional<SvdAlgorithm> svd;              // unset: auto (resolve_algorithm)
  int rank = 16;                                // ignored with energy
  std::optional<double> alpha;                  // default: alpha = rank
  bool rslora = false;
  int niter = 4, oversample = 10;
  std::optional<double> energy;  // per-layer ranks: Σσ²_{≤k} ≥ F·Σσ²
  int max_rank = 0;              // randomized + energy: rank cap (0: 256)
  DType adapter_dtype = DType::F32;
  /// QPiSSA: the residual quantized into this format (a quantized input's residual keeps the
  /// input's format without it).
  std::optional<QuantFormatRequest> quantize_residual;
  std::string compute_dtype = "bfloat16";  // bnb_4bit_compute_dtype of a bnb residual
  /// With a quantized residual of a float input: also measure plain Q(W) (QLoRA) and LoftQ's
  /// order (Q(W), then the rank-r SVD of W − Q(W)) at the same bits, per layer.
  bool compare_quantization = true;
};

/// Runs the whole job; returns the report (also written to OUT/report.json).
/// Bad input throws Error(Usage/Format) before anything is left on disk.
Json run_svd_init(const SvdInitOptions& options);

/// The report's row-derived totals (CommandSpec::totals): one fold for a run and for stitch.
Json svd_init_totals(const Json& report, const std::vector<std::string>& residual_files);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string svd_init_summary(const Json& report, const std::string& output);

}  // namespace ckpt
