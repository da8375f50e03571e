// ckptkit stitch: assemble the partial outputs of `--shard K/N` runs into one output
#include <memory>
#include <string>
#include <vector>

#include "ckptkit/commands/registry.hpp"
#include "ckptkit/engine/stitch.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_stitch(CLI::App& app, Run& run) {
  struct Flags {
    std::vector<std::string> parts;
    std::string output, report;
    bool force = false, quiet = false, json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "stitch", "Assemble the partial outputs of --shard K/N runs into one output");
  cmd->add_option("parts", f->parts, "The N part directories (any order)")->required();
  cmd->add_option("-o,--output", f->output, "Output directory (written atomically)")->required();
  cmd->add_flag("--force", f->force, "Replace an existing output directory");
  cmd->add_option("--report", f->report, "Also write the stitched JSON report to this file");
  cmd->add_flag("-q,--quiet", f->quiet, "No progress bar or summary");
  cmd->add_flag("--json", f->json, "Print the stitched JSON report on stdout");
  cmd->footer(
      "Example:\n"
      "  for k in 0 1 2; do ckptkit svd-init model -o part$k --rank 16 --shard $k/3; done\n"
      "  ckptkit stitch part0 part1 part2 -o out\n"
      "The result is byte-identical to `ckptkit svd-init model -o out --rank 16` "
      "(docs/distributed.md).");
  cmd->callback([f, &run] {
    run = [f] {
      StitchOptions o;
      for (const auto& p : f->parts)
        o.parts.emplace_back(p);
      o.output = f->output;
      o.force = f->force;
      o.progress = !f->quiet && !f->json;
      if (!f->report.empty()) o.report_path = f->report;
      o.commands = command_specs();
      const Json report = run_stitch(o);
      CommonFlags cf;
      cf.quiet = f->quiet;
      cf.json = f->json;
      print_result(cf, report, stitch_summary(report, f->parts.size(), f->output));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
