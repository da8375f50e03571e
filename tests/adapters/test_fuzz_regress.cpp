// Regression cases for bugs found while fuzzing the adapter readers (fuzz/fuzz_adapter_config.cpp,
// fuzz/fuzz_mpo_adapter.cpp; docs/fuzzing.md). Each input used to escape as a non-ckpt exception
// (exit 3, "internal error"), invoke undefined behaviour or yield a rank of 0; each must now be
// one Error(Format) naming the file.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <string>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/io/safetensors.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::TempDir;

namespace {

void write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

/// read_mpo_adapter on a directory with `config` and a tensor-less adapter_model.safetensors must
/// throw Error(Format) on one line naming the config file; returns the message.
std::string mpo_error(const std::string& config) {
  TempDir dir("ckptkit-mpo-regress");
  write(dir.path() / "adapter_config.json", config);
  const auto empty = serialize_header({}, {}, false);
  std::ofstream(dir.path() / "adapter_model.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(empty.data()),
             static_cast<std::streamsize>(empty.size()));
  try {
    (void)read_mpo_adapter(dir.path());
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::strchr(e.what(), '\n') == nullptr);
    CHECK_THAT(std::string(e.what()), Catch::Contains("adapter_config.json"));
    return e.what();
  }
  FAIL("no error for " << config);
  return "";
}

std::string lora_error(const std::string& config) {
  try {
    (void)parse_lora_config(config, "adapter_config.json");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    return e.what();
  }
  FAIL("no error for " << config);
  return "";
}

}  // namespace

TEST_CASE("adapter_config.json ranks beyond int are refused", "[fuzz-regress][lora]") {
  // r = 2^32 used to wrap to 0 in get<int>() (scaling alpha / r = inf).
  CHECK_THAT(lora_error(R"({"peft_type": "LORA", "r": 4294967296})"),
             Catch::Contains("'r' must be a positive integer"));
  CHECK_THAT(lora_error(R"({"peft_type": "LORA", "rank_pattern": {"q_proj": 4294967297}})"),
             Catch::Contains("rank_pattern.q_proj"));
  // The largest int is still a valid rank.
  CHECK(parse_lora_config(R"({"peft_type": "LORA", "r": 2147483647})", "a.json").r == 2147483647);
}

TEST_CASE("MPO adapter_config.json fields of the wrong type are Format errors",
          "[fuzz-regress][mpo]") {
  CHECK_THAT(mpo_error(R"({"ckptkit_format": 5})"), Catch::Contains("ckptkit_format"));
  CHECK_THAT(mpo_error(R"({"ckptkit_format": "mpo", "format_version": "1"})"),
             Catch::Contains("format_version"));
  CHECK_THAT(mpo_error(R"({"ckptkit_format": "mpo", "format_version": 1e300})"),
             Catch::Contains("format_version"));
  CHECK_THAT(mpo_error(R"({"ckptkit_format": "mpo", "format_version": 1, "trainable": 3})"),
             Catch::Contains("trainable"));
  CHECK_THAT(mpo_error(R"({"ckptkit_format": "mpo", "format_version": 1, "modules": {"m": 3}})"),
             Catch::Contains("must be an object"));
  // Factors whose product overflows int64 (undefined behaviour in the shape check before).
  CHECK_THAT(
      mpo_error(R"({"ckptkit_format": "mpo", "format_version": 1, "modules": {"m": {)"
                R"("shape": [4, 4], "row_shape": [4611686018427387904, 4], "col_shape": [4, 1],)"
                R"( "bonds": [1, 1, 1]}}})"),
      Catch::Contains("overflow"));
  // is_mpo_adapter answers instead of throwing.
  TempDir dir("ckptkit-mpo-regress");
  write(dir.path() / "adapter_config.json", R"({"ckptkit_format": 5})");
  CHECK_FALSE(is_mpo_adapter(dir.path()));
}
