// libFuzzer target for a part's ckptkit-part.json (ckpt::parse_part_manifest), what `stitch` reads
// first from each --shard K/N output: any input either is accepted with every field stitch reads
// typed and every name it joins to a directory plain and relative, or throws ckpt::Error of kind
// Format or Unsupported on one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/stitch.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

/// What check_plain_relative promises, restated independently: no root, no "..", no backslash.
bool plain(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos) return false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = name.find('/', start);
    const std::string part = name.substr(start, end - start);
    if (part.empty() || part == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ckpt::Json j;
  try {
    j = ckpt::parse_part_manifest(text, "fuzz/ckptkit-part.json");
  } catch (const ckpt::Error& e) {
    check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Unsupported);
    check(std::strchr(e.what(), '\n') == nullptr);
    return 0;
  }
  // Everything load_part and check_parts read without further checks must be there and typed.
  (void)j["shard"]["index"].get<int>();
  (void)j["shard"]["count"].get<int>();
  (void)j["output"].get<std::string>();
  for (const auto& c : j["checkpoints"]) {
    const std::string dir = c["dir"].get<std::string>();
    check(dir == "." || plain(dir));
    check(plain(c["writer"]["base_name"].get<std::string>()));
    check(c["writer"]["base_name"].get<std::string>().find('/') == std::string::npos);
    for (const auto& f : c["part_files"])
      check(plain(f.get<std::string>()));
    (void)c["writer"]["max_shard_size"].get<std::uint64_t>();
    (void)c["writer"]["zstd_level"].get<int>();
    for (const auto& t : c["plan"]) {
      (void)t["name"].get<std::string>();
      (void)t["shard"].get<std::int64_t>();
    }
  }
  (void)j.dump();  // bounded depth: dumping recurses
  return 0;
}
