// ckptkit mpo-init: DoTA: matrix-product-operator adapters (QDoTA with an NF4 residual)
#include "commands.hpp"

namespace ckpt::cli {

void setup_mpo_init(CLI::App& app, Run& run) { add_planned(app, run, "mpo-init", "DoTA: matrix-product-operator adapters (QDoTA with an NF4 residual)"); }

}  // namespace ckpt::cli
