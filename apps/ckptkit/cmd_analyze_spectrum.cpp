// ckptkit analyze-spectrum CKPT -o OUT [--compare FINETUNED | --base BASE | --adapter ADAPTER]
#include "ckptkit/commands/analyze_spectrum/analyze_spectrum.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_analyze_spectrum(CLI::App& app, Run& run) {
  struct Flags {
    std::string input, compare, base, adapter;
    int intruder_k = 10, angles_k = 16;
    double intruder_eps = 0.5, exact_below = 1e-6;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "analyze-spectrum",
      "Per-layer spectra and fine-tuning drift: report.json, CSV tables, report.html");
  cmd->add_option("checkpoint", f->input, "Checkpoint (the base when comparing)")->required();
  auto* cmp = cmd->add_option(
      "--compare", f->compare,
      "Fine-tuned checkpoint with the same tensor names and shapes: report the drift");
  // The vocabulary of `svd-init FT --base BASE`: the checkpoint is the fine-tuned one.
  auto* base = cmd->add_option("--base", f->base,
                               "Base checkpoint the positional one was fine-tuned from (the same "
                               "as `BASE --compare CHECKPOINT`)")
                   ->excludes(cmp);
  cmd->add_option("--adapter", f->adapter,
                  "PEFT LoRA adapter directory: report the drift of W + s*B*A")
      ->excludes(cmp)
      ->excludes(base);
  cmd->add_option("--intruder-k", f->intruder_k,
                  "Top fine-tuned left singular vectors tested (default 10)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--intruder-eps", f->intruder_eps,
                  "Intruder when the best |cos| with every base vector is below this (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--angles-k", f->angles_k,
                  "Dimension of the subspaces compared by principal angles (default 16)")
      ->check(CLI::PositiveNumber);
  cmd->add_option(
         "--exact-below", f->exact_below,
         "Recompute with SVD (f64) when sigma_min/sigma_1 from the Gram route is below this "
         "(default 1e-6; 0 = never)")
      ->check(CLI::NonNegativeNumber);
  add_common_flags(cmd, f->common,
                   kTargetFlags | kFanInFanOutFlags | kShardFlag | kModulePrefixFlag);
  cmd->footer(
      "Examples:\n  ckptkit analyze-spectrum ./model -o spectrum/\n"
      "  ckptkit analyze-spectrum ./base --compare ./finetuned -o drift/ && xdg-open "
      "drift/report.html\n"
      "  ckptkit analyze-spectrum ./finetuned --base ./base -o drift/   (the same)\n"
      "  ckptkit analyze-spectrum ./base --adapter ./lora-adapter -o lora-drift/ --intruder-k 20");
  cmd->callback([f, &run] {
    run = [f] {
      AnalyzeSpectrumOptions o;
      o.input = f->input;
      if (!f->compare.empty()) o.compare = f->compare;
      if (!f->base.empty()) {
        o.input = f->base;
        o.compare = f->input;
      }
      if (!f->adapter.empty()) o.adapter = f->adapter;
      o.drift.intruder_k = f->intruder_k;
      o.drift.intruder_eps = f->intruder_eps;
      o.drift.angles_k = f->angles_k;
      o.exact_below = f->exact_below;
      o.common = to_common(f->common, argv_store());
      const Json j = run_analyze_spectrum(o);
      print_result(f->common, j,
                   analyze_spectrum_markdown(j) + "\nwrote " + o.common.output.string() +
                       ": report.json, report.html, CSV tables\n");
      return 0;
    };
  });
}

}  // namespace ckpt::cli
