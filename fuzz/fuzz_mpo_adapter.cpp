// libFuzzer target for ckptkit's MPO adapter directories (adapters/mpo_adapter.hpp): the input is
// split at the first 0xFF byte into adapter_config.json and adapter_model.safetensors, and
// read_mpo_adapter reads the directory. An accepted adapter's cores must contract to each
// module's [out, in] shape (mpo_module_delta has rows*cols values); anything else must be
// ckpt::Error (Format, Unsupported or Usage) on one line.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "fuzz_file_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* cut = static_cast<const std::uint8_t*>(std::memchr(data, 0xFF, size));
  const std::size_t n_cfg = cut ? static_cast<std::size_t>(cut - data) : size;
  fuzz::write_file("adapter_config.json", data, n_cfg);
  const std::size_t rest = cut ? size - n_cfg - 1 : 0;
  fuzz::write_file("adapter_model.safetensors", cut ? cut + 1 : data, rest);
  try {
    const ckpt::MpoAdapter a = ckpt::read_mpo_adapter(fuzz::scratch_dir());
    for (const auto& m : a.modules) {
      // Contracting is O(rows*cols): only small modules, so executions stay fast.
      std::int64_t cells = 0;
      if (__builtin_mul_overflow(m.rows, m.cols, &cells) || cells > (1 << 16)) continue;
      const auto d = ckpt::mpo_module_delta(m, a.fan_in_fan_out);
      fuzz::check(static_cast<std::int64_t>(d.size()) == cells);
    }
  } catch (const ckpt::Error& e) {
    fuzz::check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Unsupported ||
                e.kind() == ckpt::ErrorKind::Usage);
    fuzz::check(std::strchr(e.what(), '\n') == nullptr);
  }
  return 0;
}
