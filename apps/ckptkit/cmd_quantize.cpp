// ckptkit quantize: Blockwise NF4/NF3/NF2/INT8 quantization, bitsandbytes-compatible
#include "commands.hpp"

namespace ckpt::cli {

void setup_quantize(CLI::App& app, Run& run) { add_planned(app, run, "quantize", "Blockwise NF4/NF3/NF2/INT8 quantization, bitsandbytes-compatible"); }

}  // namespace ckpt::cli
