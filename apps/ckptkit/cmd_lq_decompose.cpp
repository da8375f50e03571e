// ckptkit lq-decompose: LQ-LoRA: W = Q + L1 L2 with NF quantization and bit budgets
#include "commands.hpp"

namespace ckpt::cli {

void setup_lq_decompose(CLI::App& app, Run& run) { add_planned(app, run, "lq-decompose", "LQ-LoRA: W = Q + L1 L2 with NF quantization and bit budgets"); }

}  // namespace ckpt::cli
