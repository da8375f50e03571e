// ckptkit merge BASE ADAPTER... -o OUT [--weights w1,w2] [--dtype bf16]
// ckptkit merge --to-lora INIT TRAINED -o OUT [--rank R]
#include <cstdio>

#include "ckptkit/commands/merge/merge.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_merge(CLI::App& app, Run& run) {
  struct Flags {
    std::vector<std::string> inputs;
    std::vector<double> weights;
    std::string dtype, base_model, original;
    QuantFormatFlags requantize;
    bool to_lora = false;
    int rank = 0;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "merge", "Fold adapters into a base checkpoint; PiSSA/SORSA to plain LoRA (--to-lora)");
  cmd->add_option("inputs", f->inputs,
                  "BASE ADAPTER... (PEFT LoRA, SORSA or MPO adapter directories; BASE alone may "
                  "be an svd-init/mpo-init output), or with --to-lora: INIT_ADAPTER "
                  "TRAINED_ADAPTER, or BASE DORA_ADAPTER")
      ->required();
  cmd->add_option("--weights", f->weights, "Weight of each adapter's delta, e.g. 1,0.5 (default 1)")
      ->delimiter(',');
  cmd->add_option("--dtype", f->dtype,
                  "Output float type bf16|f16|f32 (default: the base's; with --to-lora: the "
                  "adapter's, f32)");
  cmd->add_flag("--to-lora", f->to_lora,
                "Convert a fine-tuned PiSSA/SORSA adapter into a LoRA for the original base: "
                "s(B·A − B0·A0), exact at rank 2r; or a DoRA adapter into the LoRA of rank "
                "--rank closest to its merge; written to OUT/adapter/");
  cmd->add_option("--rank", f->rank,
                  "With --to-lora: re-truncate to this rank by an SVD of the factored form");
  cmd->add_option("--base-model-id,--base-model", f->base_model,
                  "With --to-lora: base_model_name_or_path to write (default: the trained "
                  "adapter's)");
  add_quant_format_flags(cmd, f->requantize, "--requantize",
                         "Quantized base: quantize each merged weight again (nf4, fp4, int8, ...; "
                         "the others stay as stored) and report how much of each update survives");
  cmd->add_option("--original", f->original,
                  "With --requantize: the full-precision checkpoint the quantized base came from "
                  "(reports the error against merging into it)");
  add_common_flags(cmd, f->common, kWriterFlags | kModulePrefixFlag);
  cmd->footer(
      "Examples:\n"
      "  ckptkit merge ./llama ./my-lora -o ./llama-merged\n"
      "  ckptkit merge ./llama ./lora-a ./lora-b --weights 1,0.5 -o ./llama-ab --dtype bf16\n"
      "  ckptkit merge ./llama-pissa -o ./llama-back          (svd-init output: residual + "
      "adapter)\n"
      "  ckptkit merge ./llama-nf4 ./qlora -o ./merged-nf4 --requantize nf4 --original ./llama\n"
      "  ckptkit merge --to-lora ./llama-pissa/adapter ./trained-pissa -o ./plain-lora --rank 16\n"
      "  ckptkit merge --to-lora ./llama ./my-dora -o ./plain-lora --rank 32");
  cmd->callback([f, cmd, &run] {
    const bool rank_given = cmd->count("--rank") > 0;
    run = [f, cmd, rank_given] {
      const CommonOptions common = to_common(f->common, argv_store());
      std::optional<DType> dtype;
      if (!f->dtype.empty()) dtype = parse_float_flag("--dtype", f->dtype);
      if (f->to_lora) {
        if (f->inputs.size() != 2)
          fail(ErrorKind::Usage,
               "--to-lora takes exactly two adapters: INIT_ADAPTER TRAINED_ADAPTER");
        if (!f->weights.empty()) fail(ErrorKind::Usage, "--weights does not apply to --to-lora");
        if (!f->requantize.scheme.empty() || !f->original.empty())
          fail(ErrorKind::Usage, "--requantize and --original do not apply to --to-lora");
        ToLoraOptions o;
        o.init_adapter = f->inputs[0];
        o.trained_adapter = f->inputs[1];
        if (rank_given) o.rank = f->rank;
        o.adapter_dtype = dtype.value_or(DType::F32);
        o.base_model_name_or_path = f->base_model;
        o.common = common;
        const Json j = is_dora_adapter(o.trained_adapter) ? run_dora_to_lora(o) : run_to_lora(o);
        print_result(f->common, j, to_lora_summary(j, o.common.output.string()));
        return 0;
      }
      if (rank_given) fail(ErrorKind::Usage, "--rank applies to --to-lora only");
      if (!f->base_model.empty())
        fail(ErrorKind::Usage, "--base-model-id applies to --to-lora only");
      MergeOptions o;
      o.base = f->inputs[0];
      for (std::size_t i = 1; i < f->inputs.size(); ++i)
        o.adapters.push_back(f->inputs[i]);
      o.weights = f->weights;
      o.dtype = dtype;
      o.requantize = requested_quant_format(cmd, f->requantize, "--requantize");
      if (cmd->count("--compute-dtype")) o.compute_dtype = f->requantize.compute_dtype;
      if (!f->original.empty()) o.original = f->original;
      o.common = common;
      const Json j = run_merge(o);
      print_result(f->common, j, merge_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
