// Regression cases for bugs the parsers' fuzz targets and their review found (fuzz/,
// docs/fuzzing.md). Each input used to crash, invoke undefined behaviour, escape as a non-ckpt
// exception (exit 3, "internal error") or allocate gigabytes from a few bytes; each must now be one
// Error(Format).
#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/lossless.hpp"
#include "ckptkit/io/safetensors.hpp"
#include "ckptkit/io/torch_bin.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

/// A one-tensor lossless archive shard whose marker JSON is `marker` (the blob is a valid encoding
/// of 16 f32 values, so only the metadata is wrong).
std::vector<std::byte> archive_with_marker(const std::string& marker) {
  std::vector<std::byte> raw(16 * 4);
  for (std::size_t i = 0; i < raw.size(); ++i)
    raw[i] = static_cast<std::byte>(i * 7 + 1);
  const auto blob = lossless_encode(DType::F32, raw, LosslessOptions{});
  TensorInfo t{"w", DType::U8, {static_cast<std::int64_t>(blob.size())}, 0, blob.size()};
  auto file = serialize_header({t}, {{"format", "pt"}, {kLosslessMarker, marker}}, true);
  file.insert(file.end(), blob.begin(), blob.end());
  return file;
}

std::string marker_with(const std::string& version, const std::string& shape) {
  return R"({"version": )" + version +
         R"(, "codec": "byteplanes+zstd", "tensors": {"w": {"dtype": "F32", "shape": )" + shape +
         "}}}";
}

/// decode_lossless_file on `file` must throw Error(Format) on one line; returns its message.
std::string format_error(const std::vector<std::byte>& file) {
  try {
    const auto h = parse_safetensors(file, "a.safetensors");
    REQUIRE(is_lossless_archive(h));
    (void)decode_lossless_file(file, h, "a.safetensors");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::strchr(e.what(), '\n') == nullptr);
    return e.what();
  }
  FAIL("no error");
  return "";
}

}  // namespace

TEST_CASE("lossless archive metadata regressions", "[fuzz-regress][lossless]") {
  // The valid marker decodes (the cases below differ from it in one field only).
  const auto good = archive_with_marker(marker_with("1", "[4, 4]"));
  const auto h = parse_safetensors(good, "a.safetensors");
  CHECK(decode_lossless_file(good, h, "a.safetensors").size() > 64);

  // "version" as a string: nlohmann's type_error escaped as an internal error (exit 3).
  CHECK_THAT(format_error(archive_with_marker(marker_with("\"1\"", "[4, 4]"))),
             Catch::Contains("unsupported ckptkit.lossless metadata"));
  // A float dimension: the cast to int64 was undefined behaviour for 1e30.
  CHECK_THAT(format_error(archive_with_marker(marker_with("1", "[1e30]"))),
             Catch::Contains("bad dtype/shape"));
  // Dimensions whose product overflows int64 (wrapped to 0 before).
  CHECK_THAT(format_error(archive_with_marker(marker_with("1", "[1099511627776, 1099511627776]"))),
             Catch::Contains("overflows"));
}

TEST_CASE("lossless blob claiming gigabytes is refused before allocating",
          "[fuzz-regress][lossless]") {
  // Header: "CKLZ", version 1, plain bytes, 1 plane, 0, 4e9 bytes, one chunk of 2^32-1 elements,
  // one compressed frame of 8 bytes. Decoding used to allocate 2 x 4 GB before looking at the
  // frame.
  std::vector<std::byte> blob(24 + 4 + 8);
  auto put = [&](std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      blob[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
  };
  std::memcpy(blob.data(), "CKLZ", 4);
  put(4, 1, 1);
  put(5, 0, 1);
  put(6, 1, 1);
  put(8, 4'000'000'000ull, 8);
  put(16, 0xFFFFFFFFull, 4);
  put(20, 1, 4);
  put(24, 8, 4);
  try {
    (void)lossless_decode(blob, DType::U8, 4'000'000'000ull, "a.safetensors: tensor 'w': ");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK_THAT(std::string(e.what()), Catch::Contains("cannot hold"));
    // One separator between the location and the message (was "'w': : lossless blob").
    CHECK_THAT(std::string(e.what()), !Catch::Contains(": :"));
  }
}

TEST_CASE("a header number too large for a double is a Format error",
          "[fuzz-regress][safetensors]") {
  // fuzz_activations, 2026-12-04: `"shape": [48198552921648689e888...]` made nlohmann throw
  // out_of_range (number overflow), not parse_error; it escaped parse_safetensors and aborted.
  const std::string json = R"({"w": {"dtype": "BF16", "shape": [4819855292e888], )"
                           R"("data_offsets": [0, 2]}})";
  std::vector<std::byte> file(8 + json.size() + 2);
  const std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i)
    file[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
  std::memcpy(file.data() + 8, json.data(), json.size());
  try {
    (void)parse_safetensors(file, "a.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::strchr(e.what(), '\n') == nullptr);
    CHECK_THAT(std::string(e.what()), Catch::Contains("a.safetensors") && Catch::Contains("JSON"));
  }
}

TEST_CASE("a torch zip whose byteorder entry holds a newline: one-line error (fuzz_torch_bin)") {
  // fuzz_torch_bin, 2026-12-06, after 1.67M executions: the byteorder entry's raw bytes went into
  // the message, newline included. Entry text is now shown escaped.
  static const char kCrash[] =
      "\x50\x4b\x03\x04\x14\x00\x00\x00\x00\x00\x52\x67\x86\x5d\x91\xd5"
      "\xfb\xe5\x21\x00\x00\x00\x21\x00\x00\x00\x10\x00\x00\x00\x61\x72"
      "\x63\x68\x69\x76\x65\x2f\x64\x61\x74\x61\x2e\x70\x6b\x6c\x80\x02"
      "\x63\x6f\x73\x0a\x73\x79\x73\x74\x65\x6d\x0a\x71\x00\x58\x04\x00"
      "\x00\x00\x74\x72\x75\x65\x71\x01\x85\x71\x02\x52\x71\x03\x2e\x50"
      "\x4b\x03\x04\x14\x00\x00\x00\x00\x00\x52\x67\x86\x5d\x85\x3d\xe3"
      "\x19\x06\x00\x00\x00\x06\x00\x00\x00\x11\x00\x00\x00\x61\x72\x63"
      "\x68\x69\x76\x65\x2f\x62\x79\x74\x65\x6f\x72\x64\x65\x72\x6c\x5d"
      "\x74\x74\x6c\x65\x50\x4b\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00"
      "\x52\x67\x86\x5d\x91\xd5\xfb\xe5\x21\x00\x00\x00\x21\x00\x00\x00"
      "\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00"
      "\x00\x00\x61\x72\x63\x68\x69\x76\x65\x2f\x64\x61\x74\x61\x2e\x70"
      "\x6b\x6c\x50\x4b\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00\x52\x67"
      "\x86\x5d\x85\x3d\xe3\x19\x06\x00\x00\x00\x06\x00\x00\x00\x11\x00"
      "\x00\x00\x00\x00\x00\x00\x80\x4f\x00\x00\x01\x00\x00\x00\x00\x00"
      "\x61\x72\x63\x68\x69\x76\x65\x2f\x62\x79\x74\x65\x6f\x72\x64\x65"
      "\x72\x50\x4b\x05\x06\x00\x00\x00\x00\x02\x00\x02\x00\x7d\x00\x00"
      "\x00\x84\x00\x00\x00\x00\x00";
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(kCrash),
                                        sizeof kCrash - 1);
  try {
    parse_torch_bin(file, "crash.bin");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Unsupported);
    CHECK(std::strchr(e.what(), '\n') == nullptr);
    CHECK(std::string(e.what()).find("byteorder") != std::string::npos);
  }
}
