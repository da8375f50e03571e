// `ckptkit quantize`: blockwise NF/INT quantization with double quantization, written in the
// bitsandbytes/transformers layout (nf4, row-wise int8) or ckptkit's documented layout (other
// schemes); `--dequantize` turns either back into floats; `--scheme lossless` writes a ZipNN-style
// byte-plane + zstd archive that every subcommand reads directly (docs/formats-quant.md).
#pragma once

#include <optional>
#include <string>

#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct QuantizeOptions {
  std::filesystem::path input;
  CommonOptions common;
  std::string scheme = "nf4";              // nf2..nf8, int2..int8, lossless
  int block = 0;                           // 0: 64 (int8 without --block: bnb row-wise LLM.int8)
  std::string double_quant;                // bnb | lq | none; empty: bnb for blockwise schemes
  int lq_bits = 8;                         // LQ-LoRA b0
  int lq_group = 256;                      // LQ-LoRA B1
  std::string lq_scale_dtype = "fp32";     // LQ-LoRA b1: fp32, bf16, fp16
  std::string layout = "auto";             // auto | bnb | ckptkit
  std::string compute_dtype = "bfloat16";  // bnb_4bit_compute_dtype in quantization_config
  bool dequantize = false;     // input is quantized (or a lossless archive): write floats
  std::optional<DType> dtype;  // --dequantize output type (default: the original dtype)
  int zstd_level = 1;          // lossless: zstd level of each byte-plane frame
};

/// Runs the quantization (or dequantization); returns the report (also written as report.json in
/// the output, except for lossless archives and dequantized checkpoints, which stay clean).
Json run_quantize(const QuantizeOptions& options);

/// The report's row-derived totals (CommandSpec::totals): one fold for a run and for stitch.
Json quantize_totals(const Json& report, const std::vector<std::string>& files);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string quantize_summary(const Json& report, const std::string& output);

}  // namespace ckpt
