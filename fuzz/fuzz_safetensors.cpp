// libFuzzer target for the safetensors header parser. Any input must either parse into a header
// whose tensors tile the data section exactly, or throw ckpt::Error(Format); anything else (another
// exception, a crash, a sanitizer report) is a bug. A parsed header must also survive a
// serialize -> parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  ckpt::SafetensorsHeader h;
  try {
    h = ckpt::parse_safetensors(file, "fuzz.safetensors");
  } catch (const ckpt::Error& e) {
    check(e.kind() == ckpt::ErrorKind::Format);
    check(std::strchr(e.what(), '\n') == nullptr);
    return 0;
  }
  // Invariants of an accepted file.
  std::uint64_t cursor = 0;
  for (const auto& t : h.tensors) {
    check(t.begin == cursor);
    check(t.nbytes() ==
          static_cast<std::uint64_t>(ckpt::numel(t.shape)) * ckpt::dtype_size(t.dtype));
    cursor = t.end;
  }
  check(cursor == h.data_size);
  check(h.data_start + h.data_size == size);
  // Round trip: the header we would write for the same tensors parses back to the same header.
  std::vector<std::byte> rewritten = ckpt::serialize_header(h.tensors, h.metadata, h.has_metadata);
  rewritten.insert(rewritten.end(), file.begin() + static_cast<std::ptrdiff_t>(h.data_start),
                   file.end());
  const ckpt::SafetensorsHeader again = ckpt::parse_safetensors(rewritten, "rewritten");
  check(again.tensors.size() == h.tensors.size());
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    check(again.tensors[i].name == h.tensors[i].name);
    check(again.tensors[i].dtype == h.tensors[i].dtype);
    check(again.tensors[i].shape == h.tensors[i].shape);
    check(again.tensors[i].begin == h.tensors[i].begin && again.tensors[i].end == h.tensors[i].end);
  }
  check(again.has_metadata == h.has_metadata);
  // Duplicate metadata keys collapse to one in JSON; compare only when the keys were unique.
  if (again.metadata.size() == h.metadata.size()) check(again.metadata == h.metadata);
  return 0;
}
