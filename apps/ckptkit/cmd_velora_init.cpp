// ckptkit velora-init: VeLoRA sub-token projection vectors from calibration activations
#include "commands.hpp"

namespace ckpt::cli {

void setup_velora_init(CLI::App& app, Run& run) { add_planned(app, run, "velora-init", "VeLoRA sub-token projection vectors from calibration activations"); }

}  // namespace ckpt::cli
