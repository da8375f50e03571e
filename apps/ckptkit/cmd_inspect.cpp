// ckptkit inspect CKPT [--json]: tensors, totals, shards, architecture, targets, validity.
#include <cstdio>
#include <string>

#include "ckptkit/commands/inspect/inspect.hpp"
#include "commands.hpp"

namespace ckpt::cli {
namespace {

struct InspectFlags {
  std::string input;
  bool json = false;
  bool scan = false;
  std::vector<std::string> target, exclude;
};

}  // namespace

void setup_inspect(CLI::App& app, Run& run) {
  auto f = std::make_shared<InspectFlags>();
  auto* cmd = app.add_subcommand("inspect",
                                 "List tensors, totals, shards and targets; validate a checkpoint");
  cmd->add_option("checkpoint", f->input,
                  "Directory, .safetensors file or index.json (.zst read too)")
      ->required();
  cmd->add_flag("--json", f->json, "Print JSON instead of a table");
  cmd->add_flag("--scan", f->scan, "Also read every float value and count NaN/Inf");
  cmd->add_option("--target", f->target, "Target modules to show as picked (suffixes or regexes)")
      ->delimiter(',');
  cmd->add_option("--exclude", f->exclude, "Modules to leave out")->delimiter(',');
  cmd->footer(
      "Example:\n  ckptkit inspect data/bytegpt-base-bf16\n  ckptkit inspect "
      "model.safetensors.index.json --json | jq .targets");
  cmd->callback([f, &run] {
    run = [f] {
      InspectOptions o;
      o.input = f->input;
      o.targets.target = f->target;
      o.targets.exclude = f->exclude;
      o.scan_values = f->scan;
      const Json j = run_inspect(o);
      if (f->json)
        std::printf("%s\n", j.dump(2).c_str());
      else
        std::printf("%s", inspect_table(j).c_str());
      return j["valid"].get<bool>() ? 0 : 1;
    };
  });
}

}  // namespace ckpt::cli
