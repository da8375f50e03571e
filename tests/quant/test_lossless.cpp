// Lossless byte-plane archives (io/lossless): bit-exact round trips on synthetic tensors of every
// float type and odd sizes, on data/ and on every file of ../shared/data (skipped when absent),
// and corrupt blobs rejected with Error(Format).
#include <catch2/catch.hpp>

#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/lossless.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {
std::vector<std::byte> bytes_of(const std::vector<float>& v, DType t) {
  std::vector<std::byte> b(v.size() * dtype_size(t));
  encode_from_f32(t, v, b);
  return b;
}

// Round-trips every tensor of a checkpoint; returns (raw bytes, encoded bytes).
std::pair<std::uint64_t, std::uint64_t> round_trip_checkpoint(const std::filesystem::path& p) {
  const auto c = Checkpoint::open(p);
  LosslessOptions o;
  o.chunk_elems = 64 * 1024;  // several chunks per large tensor
  std::uint64_t raw = 0, enc = 0;
  for (const auto& t : c.tensors()) {
    const auto v = c.view(t);
    const auto blob = lossless_encode(v.dtype, v.bytes, o);
    const auto back = lossless_decode(blob, v.dtype, v.bytes.size(), t.info.name);
    REQUIRE(back.size() == v.bytes.size());
    INFO(p.string() << ": " << t.info.name);
    CHECK(std::memcmp(back.data(), v.bytes.data(), back.size()) == 0);
    raw += v.bytes.size();
    enc += blob.size();
  }
  return {raw, enc};
}
}  // namespace

TEST_CASE("lossless: synthetic tensors round-trip bit-exactly", "[lossless]") {
  auto x = test::gaussian(100003, 9, 0.02f);
  x[5] = -0.0f;
  x[6] = 1e-40f;  // subnormal
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    const auto b = bytes_of(x, t);
    LosslessOptions o;
    o.chunk_elems = 4096;
    const auto blob = lossless_encode(t, b, o);
    const auto back = lossless_decode(blob, t, b.size(), "x");
    CHECK(back == b);
    INFO(dtype_name(t) << ": " << b.size() << " -> " << blob.size());
    if (t == DType::BF16)
      CHECK(blob.size() < b.size() * 0.8);  // Gaussian bf16: exponent plane ~2.6 bits
  }
  // Odd byte counts fall back to one plane; empty tensors work.
  std::vector<std::byte> odd(12345);
  for (std::size_t i = 0; i < odd.size(); ++i)
    odd[i] = static_cast<std::byte>((i * 31) % 7);
  CHECK(lossless_decode(lossless_encode(DType::U8, odd, {}), DType::U8, odd.size(), "u8") == odd);
  CHECK(lossless_decode(lossless_encode(DType::F32, {}, {}), DType::F32, 0, "empty").empty());
}

TEST_CASE("lossless: corrupt blobs are Format errors", "[lossless]") {
  const auto b = bytes_of(test::gaussian(5000, 1), DType::BF16);
  auto blob = lossless_encode(DType::BF16, b, {});
  CHECK_THROWS_AS(lossless_decode(blob, DType::BF16, b.size() + 2, "t"), Error);
  auto bad = blob;
  bad[0] = std::byte{'X'};
  CHECK_THROWS_AS(lossless_decode(bad, DType::BF16, b.size(), "t"), Error);
  bad = blob;
  bad.resize(bad.size() - 3);
  CHECK_THROWS_AS(lossless_decode(bad, DType::BF16, b.size(), "t"), Error);
  bad = blob;
  bad[bad.size() - 10] ^=
      std::byte{0x5A};  // inside a zstd frame (or a raw plane: then bytes differ)
  try {
    const auto out = lossless_decode(bad, DType::BF16, b.size(), "t");
    CHECK(out != b);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
  }
}

TEST_CASE("lossless: bit-exact on data/ and ../shared/data", "[lossless]") {
  const auto [raw, enc] = round_trip_checkpoint(test::data_dir() / "bytegpt-base-bf16");
  INFO("bytegpt-base-bf16 ratio " << double(raw) / double(enc));
  CHECK(double(raw) / double(enc) > 1.4);
  const auto shared = test::shared_data_dir();
  if (shared.empty()) {
    WARN("../shared/data absent: skipping the shared checkpoints");
    return;
  }
  for (const auto& d : std::filesystem::directory_iterator(shared)) {
    if (!d.is_directory()) continue;
    for (const auto& f : std::filesystem::directory_iterator(d.path()))
      if (f.path().extension() == ".safetensors") {
        const auto [r, e] = round_trip_checkpoint(f.path());
        INFO(f.path().string() << " ratio " << double(r) / double(e));
        CHECK(e < r);
      }
  }
}
