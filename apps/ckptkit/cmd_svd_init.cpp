// ckptkit svd-init: PiSSA / MiLoRA / SORSA adapters and LoRA extraction by SVD
#include "commands.hpp"

namespace ckpt::cli {

void setup_svd_init(CLI::App& app, Run& run) { add_planned(app, run, "svd-init", "PiSSA / MiLoRA / SORSA adapters and LoRA extraction by SVD"); }

}  // namespace ckpt::cli
