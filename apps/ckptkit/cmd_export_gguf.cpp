// ckptkit export-gguf ADAPTER --base CKPT -o adapter.gguf [--outtype f32|f16|bf16|q8_0]
//   [--alpha A]
#include <cstdio>

#include "ckptkit/commands/export_gguf/export_gguf.hpp"
#include "ckptkit/core/error.hpp"
#include "commands.hpp"
#include "flags.hpp"

namespace ckpt::cli {

void setup_export_gguf(CLI::App& app, Run& run) {
  struct Flags {
    std::string adapter, base, outtype = "f32";
    double alpha = 0;
    CommonFlags common;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "export-gguf",
      "A PEFT LoRA adapter as a llama.cpp GGUF adapter (llama, mistral, qwen2/3, "
      "gemma/2), exact per module under llama.cpp's alpha / rank");
  cmd->add_option("adapter", f->adapter, "PEFT LoRA (or SORSA) adapter directory or output root")
      ->required();
  cmd->add_option("--base", f->base,
                  "The HF checkpoint the adapter is for (config.json: architecture, head counts)")
      ->required();
  cmd->add_option("--outtype", f->outtype,
                  "Tensor type: f32 (default), f16, bf16, q8_0 (rows not a multiple of 32 in "
                  "f16, as llama.cpp's converter)")
      ->transform(lower_scheme);
  cmd->add_option("--alpha", f->alpha,
                  "adapter.lora.alpha to write (default: the most common scale * rank; lora_b of "
                  "the other modules is rescaled)");
  add_common_flags(cmd, f->common, kModulePrefixFlag);
  cmd->get_option("--output")->description("The .gguf file to write (atomically)");
  cmd->footer(
      "Examples:\n"
      "  ckptkit export-gguf ./my-lora --base ./llama -o my-lora.gguf\n"
      "  ckptkit svd-init ./llama-ft --base ./llama -o ./extracted --energy 0.9 && ckptkit "
      "export-gguf ./extracted --base ./llama -o extracted.gguf --outtype q8_0\n"
      "Then: llama-cli -m llama.gguf --lora my-lora.gguf");
  cmd->callback([f, cmd, &run] {
    run = [f, cmd] {
      ExportGgufOptions o;
      o.adapter = f->adapter;
      o.base = f->base;
      o.common = to_common(f->common, argv_store());
      const auto t = gguf::parse_tensor_type(f->outtype);
      if (!t)
        fail(ErrorKind::Usage, "--outtype: '" + f->outtype + "' is not f32, f16, bf16 or q8_0");
      o.outtype = *t;
      if (cmd->count("--alpha")) o.alpha = f->alpha;
      const Json j = run_export_gguf(o);
      print_result(f->common, j, export_gguf_summary(j, o.common.output.string()));
      return 0;
    };
  });
}

}  // namespace ckpt::cli
