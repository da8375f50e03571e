// The registry of subcommands: each setup function adds its CLI11 subcommand to the app and,
// when that subcommand is chosen, sets `run` to the action. One cmd_<name>.cpp per subcommand.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace ckpt::cli {

using Run = std::function<int()>;
using Setup = void (*)(CLI::App&, Run&);

void setup_svd_init(CLI::App& app, Run& run);
void setup_mpo_init(CLI::App& app, Run& run);
void setup_lq_decompose(CLI::App& app, Run& run);
void setup_quantize(CLI::App& app, Run& run);
void setup_merge(CLI::App& app, Run& run);
void setup_analyze_spectrum(CLI::App& app, Run& run);
void setup_velora_init(CLI::App& app, Run& run);
void setup_inspect(CLI::App& app, Run& run);
void setup_convert(CLI::App& app, Run& run);
void setup_export_gguf(CLI::App& app, Run& run);
void setup_stitch(CLI::App& app, Run& run);
void setup_completion(CLI::App& app, Run& run);

/// The names of the app's subcommands in `ckptkit --help` order ("completion" too unless
/// `with_completion` is false), for "did you mean", help listings and shell completion.
std::vector<std::string> command_names(CLI::App& app, bool with_completion = true);
/// Every spelling of `cmd`'s options: "--rank", "-r", ...
std::vector<std::string> flag_names(const CLI::App& cmd);

/// Every subcommand, in the order `ckptkit --help` lists them.
inline std::vector<Setup> all_commands() {
  return {setup_svd_init, setup_mpo_init,         setup_lq_decompose, setup_quantize,
          setup_merge,    setup_analyze_spectrum, setup_velora_init,  setup_inspect,
          setup_convert,  setup_export_gguf,      setup_stitch,       setup_completion};
}

}  // namespace ckpt::cli
