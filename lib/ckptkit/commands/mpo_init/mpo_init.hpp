// `ckptkit mpo-init`: DoTA adapters (the MPO of each target weight) with the frozen residual
// W_res = W − MPO(W), and QDoTA (the residual in NF4, bitsandbytes layout). See docs/mpo-init.md.
// Output (one directory, appearing atomically):
//   OUT/adapter/   adapter_model.safetensors (cores) + adapter_config.json (ckptkit MPO format v1)
//   OUT/residual/  the input checkpoint with every target W replaced by W − MPO(W)
//   OUT/report.json
#pragma once

#include <optional>

#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct MpoInitOptions {
  std::filesystem::path input;
  CommonOptions common;
  int cores = 3;  // automatic balanced factorization (when no shapes)
  std::vector<std::int64_t> row_shape, col_shape;  // explicit factorization (both or neither)
  std::optional<std::int64_t> bond;                // cap on every bond
  std::optional<double> tolerance;      // relative Frobenius error ε, ε/√(N−1) per bond
  std::optional<std::int64_t> params;   // per-matrix parameter budget
  std::optional<int> params_like_lora;  // budget = r·(out + in), a rank-r LoRA's count
  std::string trainable = "all";        // all (DoTA) | auxiliary (MPOP: central core frozen)
  std::string quantize_residual;        // "" | any quantize scheme: nf4 (QDoTA), fp4, nf3, int8...
  int quant_block = 0;                  // block size; 0: 64 (QLoRA's), int8 row-wise
  DType adapter_dtype = DType::F32;
};

/// Runs the whole job; returns the report (also written to OUT/report.json). Bad input (shapes,
/// factorizations, budgets) throws Error(Usage) naming the tensor before anything is left on disk.
Json run_mpo_init(const MpoInitOptions& options);

/// The report's row-derived totals (CommandSpec::totals): one fold for a run and for stitch.
Json mpo_init_totals(const Json& report, const std::vector<std::string>& residual_files);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string mpo_init_summary(const Json& report, const std::string& output);

}  // namespace ckpt
