// ckptkit mpo-init CKPT -o OUT [--cores N | --row-shape .. --col-shape ..]
//                   [--bond D | --tolerance EPS | --params P | --params-like-lora R]
//                   [--trainable all|auxiliary] [--quantize-residual nf4]
#include <cstdio>

#include "ckptkit/commands/mpo_init/mpo_init.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_mpo_init(CLI::App& app, Run& run) {
  struct Flags {
    std::string input, adapter_dtype = "f32", quantize;
    int cores = 3;
    std::vector<std::int64_t> row_shape, col_shape;
    std::int64_t bond = 0, params = 0;
    double tolerance = 0;
    int params_like_lora = 0;
    int quant_block = 0;
    std::string trainable = "all";
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "mpo-init", "DoTA: matrix-product-operator adapters (QDoTA with a quantized residual)");
  cmd->add_option("checkpoint", f->input, "Input checkpoint")->required();
  auto* cores =
      cmd->add_option("--cores", f->cores,
                      "Cores N: rows and columns each split into N balanced factors (default 3)");
  auto* rows =
      cmd->add_option("--row-shape", f->row_shape,
                      "Explicit row (out_features) factors, e.g. 4,4,8,8,4 (with --col-shape)")
          ->delimiter(',');
  auto* cols = cmd->add_option("--col-shape", f->col_shape,
                               "Explicit column (in_features) factors, one per core")
                   ->delimiter(',');
  rows->excludes(cores);
  cols->excludes(cores);
  cmd->add_option("--bond", f->bond, "Cap every bond dimension at D");
  cmd->add_option(
      "--tolerance", f->tolerance,
      "Relative Frobenius error eps: each of the N-1 bonds drops at most eps*||W||/sqrt(N-1)");
  cmd->add_option("--params", f->params,
                  "Per-matrix parameter budget: the largest uniform bond cap whose count fits");
  cmd->add_option("--params-like-lora", f->params_like_lora,
                  "Budget = the parameter count of a rank-R LoRA of each matrix, R*(out+in)");
  cmd->add_option(
      "--trainable", f->trainable,
      "Cores recorded as trainable: all (DoTA, default) or auxiliary (MPOP: central core frozen)");
  cmd->add_option("--quantize-residual", f->quantize,
                  "QDoTA: quantize the residual (nf4, fp4, nf3, int8, ...; bitsandbytes layout "
                  "where bnb can store it)")
      ->transform(lower_scheme);
  // --block as in quantize and lq-decompose; --quant-block, its first name, still accepted.
  cmd->add_option("--block,--quant-block", f->quant_block,
                  "Block size of --quantize-residual (default 64, as QLoRA; int8 without it: "
                  "row-wise)");
  add_adapter_dtype_flag(cmd, f->adapter_dtype, "Dtype of the stored cores");
  add_common_flags(cmd, f->common,
                   kTargetFlags | kFanInFanOutFlags | kShardFlag | kWriterFlags |
                       kModulePrefixFlag | kAdapterWriterFlags);
  cmd->footer(
      "Examples:\n"
      "  ckptkit mpo-init ./llama -o ./llama-dota --cores 5 --params-like-lora 8\n"
      "  ckptkit mpo-init ./llama -o ./llama-dota --target q_proj,v_proj --row-shape 4,4,8,8,4 "
      "--col-shape 4,4,8,8,4 --bond 32\n"
      "  ckptkit mpo-init ./llama -o ./llama-qdota --cores 5 --tolerance 0.5 --quantize-residual "
      "nf4\n"
      "Output: OUT/adapter (cores, adapter_config.json), OUT/residual (W - MPO(W)), "
      "OUT/report.json");
  cmd->callback([f, &run, cmd] {
    run = [f, cmd] {
      MpoInitOptions o;
      o.input = f->input;
      o.common = to_common(f->common, argv_store());
      o.cores = f->cores;
      o.row_shape = f->row_shape;
      o.col_shape = f->col_shape;
      if (cmd->count("--bond")) o.bond = f->bond;
      if (cmd->count("--tolerance")) o.tolerance = f->tolerance;
      if (cmd->count("--params")) o.params = f->params;
      if (cmd->count("--params-like-lora")) o.params_like_lora = f->params_like_lora;
      o.trainable = f->trainable;
      o.quantize_residual = f->quantize;
      o.quant_block = f->quant_block;
      o.adapter_dtype = parse_float_flag("--adapter-dtype", f->adapter_dtype);
      const Json j = run_mpo_init(o);
      print_result(f->common, j, mpo_init_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
