// ckptkit lq-decompose CKPT -o OUT [--scheme nf3] [--rank 64] [--budget-bits 2.75] ...
#include <cstdio>

#include "ckptkit/commands/lq_decompose/lq_decompose.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_lq_decompose(CLI::App& app, Run& run) {
  struct Flags {
    LqDecomposeOptions o;
    std::string fisher, imatrix, adapter_dtype = "f32", order = "svd-first", svd = "randomized";
    double alpha = 16, budget = 0;
    bool no_compare = false;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("lq-decompose",
                                 "LQ-LoRA: W = Q + L1 L2 with NF quantization and bit budgets");
  cmd->add_option("checkpoint", f->o.input, "Input checkpoint")->required();
  cmd->add_option("--rank,-r", f->o.rank, "Rank of L1 L2 (default 64; 0: plain quantization)");
  cmd->add_option("--alpha", f->alpha, "lora_alpha of the adapter (default 16; s = alpha/r)");
  add_quant_flags(cmd, f->o, "Quantizer of Q: nf2..nf8, int2..int8, fp4 (default nf4)", "lq");
  cmd->add_option(
      "--max-iter", f->o.max_iter,
      "Iteration cap; the loop stops earlier when the error stops falling (default 10)");
  cmd->add_option("--order", f->order, "svd-first (LQ-LoRA, default) or quantize-first (LoftQ)")
      ->check(CLI::IsMember({"svd-first", "quantize-first"}));
  cmd->add_option("--svd", f->svd, "randomized (default) or exact")
      ->check(CLI::IsMember({"randomized", "exact"}));
  add_randomized_svd_flags(cmd, f->o.niter, f->o.oversample);
  cmd->add_flag("--no-compare", f->no_compare,
                "Skip measuring plain quantization and the other order per matrix");
  cmd->add_option("--fisher", f->fisher,
                  "Per-element squared gradients (safetensors, same names and shapes as the "
                  "weights): weighted SVD and error");
  cmd->add_option("--imatrix", f->imatrix,
                  "Per-input-column mean of x^2 (safetensors of vectors named like the weights "
                  "or their modules): column-weighted SVD and error");
  cmd->add_option("--budget-bits", f->budget,
                  "Choose one config per matrix to minimise the total error within this many "
                  "stored bits per parameter (e.g. 2.75, 3.25)");
  cmd->add_option("--candidates", f->o.candidates,
                  "Budget candidate set: default (48 configs) or lq-lora (432)")
      ->check(CLI::IsMember({"default", "lq-lora"}));
  cmd->add_option("--candidate-iters", f->o.candidate_iters,
                  "LQ iterations per candidate in the budget cost table (default 1)");
  add_adapter_dtype_flag(cmd, f->adapter_dtype, "Adapter tensor dtype");
  add_common_flags(cmd, f->common,
                   kTargetFlags | kFanInFanOutFlags | kShardFlag | kWriterFlags | kSeedFlag |
                       kModulePrefixFlag | kAdapterWriterFlags);
  cmd->footer(
      "Examples:\n"
      "  ckptkit lq-decompose ./llama -o ./llama-lq --scheme nf3 --rank 64\n"
      "  ckptkit lq-decompose ./llama -o ./llama-lq --budget-bits 2.75 --fisher "
      "fisher.safetensors\n"
      "  ckptkit lq-decompose ./llama -o ./llama-loftq --scheme nf4 --double-quant bnb "
      "--order quantize-first");
  cmd->callback([f, cmd, &run] {
    const bool alpha_given = cmd->count("--alpha") > 0;
    const bool budget_given = cmd->count("--budget-bits") > 0;
    run = [f, alpha_given, budget_given] {
      LqDecomposeOptions o = f->o;
      o.common = to_common(f->common, argv_store());
      if (alpha_given) o.alpha = f->alpha;
      if (budget_given) o.budget_bits = f->budget;
      if (!f->fisher.empty()) o.fisher = f->fisher;
      if (!f->imatrix.empty()) o.imatrix = f->imatrix;
      if (o.fisher && o.imatrix) fail(ErrorKind::Usage, "--fisher and --imatrix are exclusive");
      o.compare = !f->no_compare;
      o.order = f->order == "svd-first" ? LqOrder::SvdFirst : LqOrder::QuantizeFirst;
      o.exact_svd = f->svd == "exact";
      o.adapter_dtype = parse_float_flag("--adapter-dtype", f->adapter_dtype);
      const Json j = run_lq_decompose(o);
      print_result(f->common, j, lq_decompose_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
