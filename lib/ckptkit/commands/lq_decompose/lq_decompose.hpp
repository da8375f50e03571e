// `ckptkit lq-decompose`: LQ-LoRA (W ≈ Q + L1·L2) per target weight, streamed through the engine,
// with optional Fisher / imatrix weighting and a bit budget allocated across matrices.
// Output (one directory, appearing atomically):
//   OUT/quantized/  the input checkpoint with every target W replaced by its quantized Q
//                   (bitsandbytes nf4 layout where the config is bnb's, else ckptkit's layout)
//   OUT/adapter/    PEFT LoRA: B = L1/√s, A = L2/√s (s = alpha/r), so s·B·A = L1·L2
//   OUT/report.json per matrix config, bits, iterations, errors (vs plain quantization and vs the
//                   LoftQ order); with --budget-bits the allocation, achieved bits and bound gap
#pragma once

#include <optional>
#include <string>

#include "ckptkit/decompose/lq.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct LqDecomposeOptions {
  std::filesystem::path input;
  CommonOptions common;
  // Quantizer of Q (ignored with budget_bits, which picks one per matrix from `candidates`).
  std::string scheme = "nf4";           ///< nf2..nf8, int2..int8
  int block = 64;                       ///< B0
  std::string double_quant = "lq";      ///< lq (LQ-LoRA's b0/B1/b1 scales) | bnb | none
  int lq_bits = 8;                      ///< b0
  int lq_group = 256;                   ///< B1
  std::string lq_scale_dtype = "fp32";  ///< b1: fp32 | bf16 | fp16
  std::string layout = "auto";          ///< auto | bnb | ckptkit
  std::string compute_dtype = "bfloat16";
  // The loop.
  int rank = 64;                      ///< LQ-LoRA's default
  std::optional<double> alpha;        ///< lora_alpha (default 16, LQ-LoRA's)
  int max_iter = 10;                  ///< iteration cap (LQ-LoRA: 100; converges in ~5-10)
  LqOrder order = LqOrder::SvdFirst;  ///< SvdFirst (LQ-LoRA) | QuantizeFirst (LoftQ)
  bool exact_svd = false;             ///< exact SVD instead of the randomized one
  int niter = 4, oversample = 10;
  bool compare = true;  ///< also measure plain quantization and the other order
  // Data-aware weights.
  std::optional<std::filesystem::path> fisher;   ///< per-element F, same names/shapes as weights
  std::optional<std::filesystem::path> imatrix;  ///< per-input-column E[x²] vectors
  // Budget allocation.
  std::optional<double> budget_bits;   ///< bits/param over the target matrices (stored bits)
  std::string candidates = "default";  ///< default (48 configs) | lq-lora (432)
  int candidate_iters = 1;             ///< LQ iterations per candidate when building the cost table
  DType adapter_dtype = DType::F32;
};

/// Runs the whole job; returns the report (also written to OUT/report.json).
/// Bad input throws Error(Usage/Format) naming the file and tensor before anything is left on disk.
Json run_lq_decompose(const LqDecomposeOptions& options);

/// The report's row-derived totals (CommandSpec::totals): one fold for a run and for stitch.
Json lq_decompose_totals(const Json& report, const std::vector<std::string>& files);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string lq_decompose_summary(const Json& report, const std::string& output);

}  // namespace ckpt
