// libFuzzer target for the PyTorch `.bin` reader (zip + restricted pickle). Any input must either
// give tensors whose byte ranges lie inside the bytes they refer to, or throw ckpt::Error of kind
// Format or Unsupported with a one-line message; anything else (another exception, a crash, a
// sanitizer report, a leak from a pickle cycle) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/torch_bin.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  ckpt::TorchBin t;
  try {
    t = ckpt::parse_torch_bin(file, "fuzz.bin");
  } catch (const ckpt::Error& e) {
    check(e.kind() == ckpt::ErrorKind::Format || e.kind() == ckpt::ErrorKind::Unsupported);
    check(std::strchr(e.what(), '\n') == nullptr);
    return 0;
  }
  const std::uint64_t limit = t.owned.empty() ? size : t.owned.size();
  for (const auto& x : t.header.tensors) {
    check(x.begin <= x.end && x.end <= limit);
    check(x.nbytes() ==
          static_cast<std::uint64_t>(ckpt::numel(x.shape)) * ckpt::dtype_size(x.dtype));
  }
  return 0;
}
