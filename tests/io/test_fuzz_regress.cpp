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
