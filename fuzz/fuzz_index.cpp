// libFuzzer target for the Hugging Face index (model.safetensors.index.json) parser: any input
// either parses into a non-empty weight map or throws ckpt::Error(Format), on one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto map = ckpt::parse_index_json(text, "fuzz.index.json");
    if (map.empty()) std::abort();
  } catch (const ckpt::Error& e) {
    if (e.kind() != ckpt::ErrorKind::Format) std::abort();
    if (std::strchr(e.what(), '\n') != nullptr) std::abort();
  }
  return 0;
}
