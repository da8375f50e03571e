// libFuzzer target for ckptkit's lossless archive framing (io/lossless.hpp). The first byte picks
// what the rest of the input is:
//   0: a whole archive shard (safetensors file with the ckptkit.lossless marker): parse, then
//      decode_lossless_file; the result must be a valid plain safetensors file.
//   1: one blob: byte 1 picks the dtype, bytes 2..5 the expected size (little-endian, at most
//      1 MiB), the rest is the blob handed to lossless_decode; the result has exactly that size.
//   2: round trip: the rest, as a tensor of the dtype picked by byte 1, is encoded with a small
//      chunk size and must decode to the same bytes.
// Every failure must be ckpt::Error of kind Format, on one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/lossless.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr ckpt::DType kDtypes[] = {ckpt::DType::BF16, ckpt::DType::F32, ckpt::DType::F16,
                                   ckpt::DType::F64, ckpt::DType::U8};

ckpt::DType pick_dtype(std::uint8_t b) {
  return kDtypes[b % (sizeof kDtypes / sizeof kDtypes[0])];
}

void expect_format_error(const ckpt::Error& e) {
  check(e.kind() == ckpt::ErrorKind::Format);
  check(std::strchr(e.what(), '\n') == nullptr);
}

void archive(std::span<const std::byte> file) {
  try {
    const ckpt::SafetensorsHeader h = ckpt::parse_safetensors(file, "fuzz.safetensors");
    if (!ckpt::is_lossless_archive(h)) return;
    const std::vector<std::byte> plain = ckpt::decode_lossless_file(file, h, "fuzz.safetensors");
    const ckpt::SafetensorsHeader back = ckpt::parse_safetensors(plain, "decoded");
    check(back.tensors.size() == h.tensors.size());
  } catch (const ckpt::Error& e) {
    expect_format_error(e);
  }
}

void blob(std::span<const std::byte> in) {
  if (in.size() < 5) return;
  const ckpt::DType dtype = pick_dtype(static_cast<std::uint8_t>(in[0]));
  std::uint64_t nbytes = 0;
  for (int i = 0; i < 4; ++i)
    nbytes |= static_cast<std::uint64_t>(in[1 + i]) << (8 * i);
  nbytes %= (1u << 20) + 1;
  try {
    const auto out = ckpt::lossless_decode(in.subspan(5), dtype, nbytes, "fuzz/blob");
    check(out.size() == nbytes);
  } catch (const ckpt::Error& e) {
    expect_format_error(e);
  }
}

void round_trip(std::span<const std::byte> in) {
  if (in.empty()) return;
  const ckpt::DType dtype = pick_dtype(static_cast<std::uint8_t>(in[0]));
  auto bytes = in.subspan(1);
  bytes = bytes.first(bytes.size() - bytes.size() % ckpt::dtype_size(dtype));
  ckpt::LosslessOptions opt;
  opt.chunk_elems = 64;  // several chunks from small inputs
  const auto enc = ckpt::lossless_encode(dtype, bytes, opt);
  const auto dec = ckpt::lossless_decode(enc, dtype, bytes.size(), "fuzz/round-trip");
  check(dec.size() == bytes.size());
  check(bytes.empty() || std::memcmp(dec.data(), bytes.data(), bytes.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      archive(rest);
      break;
    case 1:
      blob(rest);
      break;
    default:
      round_trip(rest);
      break;
  }
  return 0;
}
