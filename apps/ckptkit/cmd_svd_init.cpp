// ckptkit svd-init CKPT -o OUT --rank R [--method pissa|milora|sorsa] [--base BASE] ...
#include <cstdio>

#include "ckptkit/commands/svd_init/svd_init.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_svd_init(CLI::App& app, Run& run) {
  struct Flags {
    std::string input, base, method = "pissa", svd = "auto", adapter_dtype = "f32";
    int rank = 16, niter = 4, oversample = 10, max_rank = 0;
    QuantFormatFlags quant;
    bool no_quant_compare = false;
    double alpha = 0, energy = 0;
    bool rslora = false;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd =
      app.add_subcommand("svd-init", "PiSSA / MiLoRA / SORSA adapters and LoRA extraction by SVD");
  cmd->add_option("checkpoint", f->input, "Input checkpoint (the fine-tuned one with --base)")
      ->required();
  cmd->add_option("--rank,-r", f->rank, "Adapter rank for every target (default 16)");
  cmd->add_option(
         "--method", f->method,
         "pissa (top-r, default), milora (bottom-r, exact SVD), sorsa (U, S, Vᵀ kept apart)")
      ->check(CLI::IsMember({"pissa", "milora", "sorsa"}));
  cmd->add_option("--alpha", f->alpha, "lora_alpha (default: = rank, as PiSSA recommends)");
  cmd->add_flag("--rslora", f->rslora, "Scaling alpha/sqrt(r) instead of alpha/r");
  cmd->add_option("--svd", f->svd,
                  "exact | randomized | auto (default: randomized, exact for milora and --energy)")
      ->check(CLI::IsMember({"exact", "randomized", "auto"}));
  add_randomized_svd_flags(cmd, f->niter, f->oversample);
  cmd->add_option("--energy", f->energy,
                  "Per-layer rank: smallest k with sum sigma^2 (top k) >= F * total, F in (0, 1]");
  cmd->add_option("--max-rank", f->max_rank,
                  "Rank cap for --energy with --svd randomized (default 256)");
  cmd->add_option("--base", f->base,
                  "Extraction: decompose CKPT - BASE into a LoRA for the untouched BASE");
  add_quant_format_flags(cmd, f->quant, "--quantize-residual",
                         "QPiSSA: quantize the residual (nf4, fp4, nf3, int8, ...; bitsandbytes "
                         "layout where bnb can store it)");
  cmd->add_flag("--no-quant-compare", f->no_quant_compare,
                "With --quantize-residual: skip measuring plain Q(W) (QLoRA) and LoftQ's order "
                "(saves one quantization and one SVD per layer)");
  add_adapter_dtype_flag(cmd, f->adapter_dtype, "Adapter tensor dtype");
  add_common_flags(cmd, f->common,
                   kTargetFlags | kFanInFanOutFlags | kShardFlag | kWriterFlags | kSeedFlag |
                       kModulePrefixFlag | kAdapterWriterFlags);
  cmd->footer(
      "Examples:\n"
      "  ckptkit svd-init ./llama -o ./llama-pissa --rank 16 --target q_proj,v_proj\n"
      "  ckptkit svd-init ./llama -o ./llama-sorsa --rank 64 --method sorsa --svd exact\n"
      "  ckptkit svd-init ./llama-ft --base ./llama -o ./extracted --energy 0.9\n"
      "  ckptkit svd-init ./llama -o ./llama-qpissa --rank 64 --quantize-residual nf4\n"
      "  ckptkit svd-init ./llama-nf4 -o ./llama-nf4-pissa --rank 16   (a quantized input: the "
      "residual keeps its format)");
  cmd->callback([f, cmd, &run] {
    const bool rank_given = cmd->count("--rank") > 0;
    const bool alpha_given = cmd->count("--alpha") > 0;
    const bool energy_given = cmd->count("--energy") > 0;
    run = [f, cmd, rank_given, alpha_given, energy_given] {
      SvdInitOptions o;
      o.input = f->input;
      o.common = to_common(f->common, argv_store());
      if (!f->base.empty()) o.base = f->base;
      o.method = f->method == "milora"  ? SvdInitMethod::Milora
                 : f->method == "sorsa" ? SvdInitMethod::Sorsa
                                        : SvdInitMethod::Pissa;
      if (f->svd != "auto")
        o.svd = f->svd == "exact" ? SvdAlgorithm::Exact : SvdAlgorithm::Randomized;
      o.rank = f->rank;
      if (alpha_given) o.alpha = f->alpha;
      o.rslora = f->rslora;
      o.niter = f->niter;
      o.oversample = f->oversample;
      if (energy_given) {
        if (rank_given) fail(ErrorKind::Usage, "--rank and --energy are exclusive");
        o.energy = f->energy;
      }
      o.max_rank = f->max_rank;
      o.adapter_dtype = parse_float_flag("--adapter-dtype", f->adapter_dtype);
      o.quantize_residual = requested_quant_format(cmd, f->quant, "--quantize-residual");
      if (!o.quantize_residual && f->no_quant_compare)
        fail(ErrorKind::Usage, "--no-quant-compare goes with --quantize-residual");
      o.compute_dtype = f->quant.compute_dtype;
      o.compare_quantization = !f->no_quant_compare;
      const Json j = run_svd_init(o);
      print_result(f->common, j, svd_init_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
