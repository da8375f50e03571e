// Bounded JSON for the small files ckptkit reads (io/json_text.hpp) and the decompression-bomb cap
// (io/file_bytes.hpp): limits hold exactly at their edge, strings do not count as nesting.
#include <zstd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/json_text.hpp"

using namespace ckpt;

namespace {

std::string nested(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("cfg.json") != std::string::npos);
    return e.kind();
  }
  FAIL("no error");
  return ErrorKind::Internal;
}

}  // namespace

TEST_CASE("JSON nesting is accepted up to 64 levels and refused beyond", "[io][json]") {
  CHECK(parse_json_text(nested(kMaxJsonDepth), "cfg.json").is_array());
  CHECK(kind_of([] { parse_json_text(nested(kMaxJsonDepth + 1), "cfg.json"); }) ==
        ErrorKind::Format);
  // 10^5 levels: refused by the linear pre-scan, no stack spent.
  CHECK(kind_of([] { parse_ordered_json_text(nested(100000), "cfg.json"); }) == ErrorKind::Format);
  // Mixed objects and arrays count alike.
  std::string mixed;
  for (int i = 0; i < 40; ++i)
    mixed += "{\"a\":[";
  mixed += "1";
  for (int i = 0; i < 40; ++i)
    mixed += "]}";
  CHECK(kind_of([&] { parse_json_text(mixed, "cfg.json"); }) == ErrorKind::Format);
}

TEST_CASE("brackets inside JSON strings are not nesting", "[io][json]") {
  const std::string text = "{\"k\": \"" + nested(500) + "\\\"[[[\", \"x\": [1]}";
  const auto j = parse_json_text(text, "cfg.json");
  CHECK(j["x"][0] == 1);
  CHECK(j["k"].get<std::string>().size() == 1004);
}

TEST_CASE("invalid JSON is a Format error naming the file", "[io][json]") {
  CHECK(kind_of([] { parse_json_text("{\"a\": ", "cfg.json"); }) == ErrorKind::Format);
  CHECK(kind_of([] { parse_json_text("]]]]", "cfg.json"); }) == ErrorKind::Format);
}

TEST_CASE("expansion is capped at 1024x plus 64 MiB", "[io][zstd]") {
  CHECK_NOTHROW(check_expansion(1000, kExpansionAllowance + 1000 * kMaxExpansionRatio, "x"));
  CHECK_THROWS_AS(check_expansion(1000, kExpansionAllowance + 1000 * kMaxExpansionRatio + 1, "x"),
                  Error);
  CHECK_NOTHROW(check_expansion(UINT64_MAX, UINT64_MAX, "x"));  // no overflow in the cap
}

TEST_CASE("a zstd frame declaring more than the cap is refused before decoding", "[io][zstd]") {
  // 80 MiB of zeros compress to a few KiB: over 1024x + 64 MiB.
  const std::vector<std::byte> zeros(std::size_t{80} << 20);
  std::vector<std::byte> packed(ZSTD_compressBound(zeros.size()));
  const std::size_t n = ZSTD_compress(packed.data(), packed.size(), zeros.data(), zeros.size(), 3);
  REQUIRE(!ZSTD_isError(n));
  packed.resize(n);
  try {
    zstd_decompress(packed, "bomb.zst");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::string(e.what()).find("bomb.zst") != std::string::npos);
    CHECK(std::string(e.what()).find("decompression bomb") != std::string::npos);
  }
  // 8 MiB of zeros stay under the 64 MiB allowance: accepted, byte for byte.
  const std::vector<std::byte> small(std::size_t{8} << 20);
  std::vector<std::byte> p2(ZSTD_compressBound(small.size()));
  p2.resize(ZSTD_compress(p2.data(), p2.size(), small.data(), small.size(), 3));
  CHECK(zstd_decompress(p2, "ok.zst") == small);
}
