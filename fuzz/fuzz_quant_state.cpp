// libFuzzer target for quantized checkpoints (formats/quant_layout.hpp): bitsandbytes'
// quant_state JSON tensors and ckptkit's own .quant_state.ckptkit, with their companion tensors
// (absmax, quant_map, nested_*, SCB, qscales, codebook). The input is a safetensors file written
// to disk and opened as a checkpoint; every quantized group found is dequantized. A dequantized
// weight must have as many values as its recorded shape; anything else must be ckpt::Error
// (Format or Unsupported) on one line.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "fuzz_file_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::write_file("model.safetensors", data, size);
  try {
    const ckpt::Checkpoint ck = ckpt::Checkpoint::open(path);
    for (const auto& g : ckpt::quantized_groups(ck)) {
      const ckpt::DequantizedWeight w = ckpt::dequantize_weight(ck, g);
      fuzz::check(static_cast<std::int64_t>(w.values.size()) == ckpt::numel(w.shape));
    }
  } catch (const ckpt::Error& e) {
    fuzz::check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Unsupported);
    fuzz::check(std::strchr(e.what(), '\n') == nullptr);
  }
  return 0;
}
