// ckptkit convert CKPT -o OUT [--dtype bf16] [--max-shard-size 2GB] [--zstd]
#include <cstdio>

#include "ckptkit/commands/convert/convert.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_convert(CLI::App& app, Run& run) {
  struct Flags {
    std::string input, dtype;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("convert", "Copy, reshard, (de)compress or cast a checkpoint");
  cmd->add_option("checkpoint", f->input, "Input checkpoint")->required();
  cmd->add_option("--dtype", f->dtype,
                  "Cast float tensors: f32, bf16, f16, f64 (round to nearest even)");
  add_common_flags(cmd, f->common, kWriterFlags);
  cmd->footer(
      "Examples:\n  ckptkit convert ./llama -o ./llama-bf16 --dtype bf16 --max-shard-size 2GB\n"
      "  ckptkit convert ./model -o ./model-zst --zstd");
  cmd->callback([f, &run] {
    run = [f] {
      ConvertOptions o;
      o.input = f->input;
      o.common = to_common(f->common, argv_store());
      if (!f->dtype.empty()) {
        o.dtype = parse_float_dtype(f->dtype);
        if (!o.dtype)
          fail(ErrorKind::Usage,
               "--dtype: unknown float type '" + f->dtype + "' (f32, bf16, f16, f64)");
      }
      const Json j = run_convert(o);
      print_result(f->common, j, convert_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
