// Regression cases the quant_state fuzz target found (fuzz/fuzz_quant_state.cpp, docs/fuzzing.md):
// each input must be one Error(Format) naming the tensor.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/safetensors.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

TEST_CASE("a ckptkit quant_state naming an unknown scheme is a Format error",
          "[fuzz-regress][quant_state]") {
  // fuzz_quant_state, 2026-12-04: "scheme": "uf3" reached quant::Scheme::parse, whose Usage error
  // ("--scheme: unknown scheme") spoke of a flag the user never gave.
  const std::string state =
      R"({"format": "ckptkit-quant", "version": 1, "dtype": "F32", )"
      R"("shape": [4, 8], "scheme": "uf3", "block": 16, "double_quant": "none"})";
  std::vector<TensorInfo> infos = {{"w.weight", DType::U8, {12}, 0, 12},
                                   {"w.weight.qscales", DType::F32, {2}, 12, 20},
                                   {"w.weight.codebook", DType::F32, {8}, 20, 52},
                                   {"w.weight.quant_state.ckptkit",
                                    DType::U8,
                                    {static_cast<std::int64_t>(state.size())},
                                    52,
                                    52 + state.size()}};
  auto file = serialize_header(infos, {{"format", "pt"}}, true);
  file.resize(file.size() + 52);
  for (char c : state)
    file.push_back(static_cast<std::byte>(c));
  test::TempDir dir;
  test::write_bytes(dir.path() / "model.safetensors", file);
  const Checkpoint ck = Checkpoint::open(dir.path() / "model.safetensors");
  const auto groups = quantized_groups(ck);
  REQUIRE(groups.size() == 1);
  try {
    (void)dequantize_weight(ck, groups.front());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK_THAT(std::string(e.what()), Catch::Contains("w.weight") &&
                                          Catch::Contains("bad quant_state") &&
                                          Catch::Contains("uf3"));
  }
}
