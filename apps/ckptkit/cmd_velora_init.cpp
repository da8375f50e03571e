// ckptkit velora-init: VeLoRA sub-token projection vectors from calibration activations
#include <cstdio>

#include "ckptkit/commands/velora_init/velora_init.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_velora_init(CLI::App& app, Run& run) {
  struct Flags {
    std::vector<std::string> inputs;
    std::int64_t groups = 0;
    std::string init = "batch-average";
    double scale = 1.0;
    bool sweep = false;
    std::int64_t batch = 8, seq = 2048;
    std::string prefix = "base_model.model.", adapter;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "velora-init", "VeLoRA sub-token projection vectors from calibration activations");
  cmd->add_option("activations", f->inputs,
                  "Activation dumps (safetensors: module name -> [tokens, D]); several are "
                  "concatenated along tokens")
      ->required();
  cmd->add_option("--groups,-M", f->groups,
                  "M, PEFT's num_groups: sub-tokens per token (size ceil(D/M))")
      ->required();
  cmd->add_option(
         "--init", f->init,
         "batch-average (VeLoRA's batch_average_once) or top-singular (best rank-1 direction)")
      ->capture_default_str();
  cmd->add_option("--scale", f->scale, "velora_config.scale written to velora_config.json")
      ->capture_default_str();
  cmd->add_flag("--sweep", f->sweep,
                "Also evaluate M = 1, 2, 4, ..., D; writes sweep.html and sweep.md");
  cmd->add_option("--batch", f->batch, "Batch size for the memory estimate")->capture_default_str();
  cmd->add_option("--seq", f->seq, "Sequence length for the memory estimate")
      ->capture_default_str();
  cmd->add_option("--prefix", f->prefix, "Key prefix of the vectors (PEFT state-dict prefix)")
      ->capture_default_str();
  cmd->add_option("--adapter", f->adapter,
                  "A PEFT LoRA adapter (e.g. svd-init's adapter/) to extend: OUT/adapter/ is it "
                  "with a vector per LoRA module and velora_config, ready for "
                  "PeftModel.from_pretrained");
  add_common_flags(cmd, f->common, kTargetFlags);
  cmd->footer(
      "Examples:\n"
      "  ckptkit velora-init acts.safetensors -o velora-out --groups 32\n"
      "  ckptkit velora-init acts-a.safetensors acts-b.safetensors -o out --groups 64 --init "
      "top-singular "
      "--sweep --target fc2\n"
      "  ckptkit velora-init acts.safetensors -o pissa-velora --groups 32 --adapter "
      "pissa/adapter\n"
      "Output: velora_embed.safetensors (<prefix><module>.lora_velora_embed), velora_config.json,\n"
      "report.json, and with --sweep sweep.html + sweep.md. See docs/velora-init.md.");
  cmd->callback([f, &run] {
    run = [f] {
      VeloraInitOptions o;
      for (const auto& p : f->inputs)
        o.inputs.emplace_back(p);
      o.common = to_common(f->common, argv_store());
      o.groups = f->groups;
      const auto init = velora::parse_init(f->init);
      if (!init)
        fail(ErrorKind::Usage, "--init: unknown '" + f->init + "' (batch-average, top-singular)");
      o.init = *init;
      o.scale = f->scale;
      o.sweep = f->sweep;
      o.batch = f->batch;
      o.seq = f->seq;
      o.prefix = f->prefix;
      if (!f->adapter.empty()) o.adapter = f->adapter;
      const Json j = run_velora_init(o);
      const std::string summary = velora_init_summary(j, o.common.output.string());
      Json report = j;
      report.erase("markdown");
      print_result(f->common, report, summary);
      return 0;
    };
  });
}

}  // namespace ckpt::cli
