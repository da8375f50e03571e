// ckptkit quantize CKPT -o OUT --scheme nf4|nf3|nf2|int8|int4|fp4|lossless [--block 64]
//   [--double-quant bnb|lq|none] [--target ...];  ckptkit quantize --dequantize QCKPT -o OUT
//   [--dtype bf16]
#include <cstdio>

#include "ckptkit/commands/quantize/quantize.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_quantize(CLI::App& app, Run& run) {
  struct Flags {
    std::string input, dtype;
    QuantizeOptions o;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "quantize", "Blockwise NF4/NF3/NF2/INT8/FP4 quantization, bitsandbytes-compatible");
  cmd->add_option("checkpoint", f->input, "Input checkpoint (a quantized one with --dequantize)")
      ->required();
  add_quant_flags(cmd, f->o,
                  "nf4 (default), nf3, nf2 (nf2..nf8), int8, int4 (int2..int8), fp4 (bitsandbytes' "
                  "FP4), or lossless (byte planes + zstd)",
                  "bnb");
  cmd->add_option(
      "--level", f->o.zstd_level,
      "lossless: zstd level of each byte-plane frame (default 1, tuned for float planes)");
  cmd->add_flag(
      "--dequantize", f->o.dequantize,
      "Turn a quantized checkpoint (bnb or ckptkit layout) or a lossless archive back into floats");
  cmd->add_option("--dtype", f->dtype,
                  "--dequantize: output float type (default: the original dtype)");
  add_common_flags(cmd, f->common, kTargetFlags | kShardFlag | kWriterFlags);
  cmd->footer(
      "Examples:\n"
      "  ckptkit quantize ./llama -o ./llama-nf4 --scheme nf4 --double-quant bnb   # loads with "
      "from_pretrained\n"
      "  ckptkit quantize ./llama -o ./llama-nf3 --scheme nf3 --double-quant lq --lq-scale-dtype "
      "bf16\n"
      "  ckptkit quantize ./llama-nf4 --dequantize -o ./llama-deq --dtype bf16\n"
      "  ckptkit quantize ./llama -o ./llama-zip --scheme lossless && ckptkit inspect ./llama-zip");
  cmd->callback([f, &run] {
    run = [f] {
      QuantizeOptions o = f->o;
      o.input = f->input;
      o.common = to_common(f->common, argv_store());
      if (!f->dtype.empty()) {
        if (!o.dequantize) fail(ErrorKind::Usage, "--dtype applies to --dequantize only");
        o.dtype = parse_float_dtype(f->dtype);
        if (!o.dtype)
          fail(ErrorKind::Usage,
               "--dtype: unknown float type '" + f->dtype + "' (f32, bf16, f16, f64)");
      }
      const Json j = run_quantize(o);
      print_result(f->common, j, quantize_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
