// libFuzzer target for activation dumps as velora-init reads them (commands/velora_init/run.cpp):
// the input is written as activations.safetensors and run_velora_init runs on it end to end
// (module selection and shape checks, f64 decoding, non-finite rejection, both passes of
// analysis/velora, the safetensors/JSON/report outputs). The first byte picks --groups and
// --init. Any input must either succeed (every output file present) or throw ckpt::Error of kind
// Format or Usage on one line. Inputs are capped (-max_len) so the Gram matrix stays small.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "ckptkit/commands/velora_init/velora_init.hpp"
#include "ckptkit/core/error.hpp"
#include "fuzz_file_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto input = fuzz::write_file("activations.safetensors", data + 1, size - 1);
  ckpt::VeloraInitOptions o;
  o.inputs = {input};
  o.common.output = fuzz::scratch_dir() / "out";
  o.common.force = true;
  o.common.exec.threads = 1;
  o.common.exec.progress = false;
  o.groups = 1 + data[0] % 8;
  o.init = (data[0] & 0x80) ? ckpt::velora::Init::TopSingular : ckpt::velora::Init::BatchAverage;
  try {
    (void)ckpt::run_velora_init(o);
    fuzz::check(std::filesystem::exists(o.common.output / "velora_embed.safetensors"));
    fuzz::check(std::filesystem::exists(o.common.output / "report.json"));
  } catch (const ckpt::Error& e) {
    fuzz::check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Usage);
    fuzz::check(std::strchr(e.what(), '\n') == nullptr);
  }
  return 0;
}
