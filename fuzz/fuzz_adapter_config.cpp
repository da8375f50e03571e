// libFuzzer target for adapter_config.json (ckpt::parse_lora_config): any input either parses into
// a config whose ranks are positive, or throws ckpt::Error of kind Format or Unsupported on one
// line. An accepted config is also asked for the rank/alpha/scaling of a few module names, which
// runs the rank_pattern/alpha_pattern keys through PEFT's regex-suffix rule.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/core/error.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ckpt::LoraConfig c;
  try {
    c = ckpt::parse_lora_config(text, "fuzz/adapter_config.json");
  } catch (const ckpt::Error& e) {
    check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Unsupported);
    check(std::strchr(e.what(), '\n') == nullptr);
    return 0;
  }
  check(c.r > 0);
  for (const auto& [key, rank] : c.rank_pattern)
    check(rank > 0);
  // Keys of any length: RE2 matches in linear time (io/regex.hpp), so no key is skipped.
  for (const char* module :
       {"model.layers.0.self_attn.q_proj", "transformer.h.1.attn.c_attn", "lm_head"}) {
    const auto [rank, alpha] = c.rank_alpha_for(module);
    check(rank > 0);
    (void)alpha;
    (void)c.scaling_for(module);
  }
  return 0;
}
