// ckptkit merge: Fold adapters into a base checkpoint; PiSSA to LoRA conversion
#include "commands.hpp"

namespace ckpt::cli {

void setup_merge(CLI::App& app, Run& run) { add_planned(app, run, "merge", "Fold adapters into a base checkpoint; PiSSA to LoRA conversion"); }

}  // namespace ckpt::cli
