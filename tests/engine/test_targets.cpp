// select_targets: the one target rule every per-layer command uses, and what its policy changes.
#include <catch2/catch.hpp>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
namespace fs = std::filesystem;

namespace {

struct Entry {
  std::string name, dtype;
  std::vector<int> shape;
  std::size_t bytes;
};

/// A GPT-2-like checkpoint directory (config.json model_type gpt2): an embedding, a Conv1D
/// weight and its bias, an int8 weight, a layer norm, a head.
void write_gpt2_like(const fs::path& dir) {
  const std::vector<Entry> entries = {{"transformer.wte.weight", "F32", {4, 4}, 64},
                                      {"transformer.h.0.attn.c_attn.weight", "F32", {4, 12}, 192},
                                      {"transformer.h.0.attn.c_attn.bias", "F32", {12}, 48},
                                      {"transformer.h.0.mlp.c_fc.weight", "I8", {4, 4}, 16},
                                      {"transformer.h.0.ln_1.weight", "F32", {4}, 16},
                                      {"lm_head.weight", "F32", {4, 4}, 64}};
  std::string header = "{";
  std::size_t offset = 0;
  for (const auto& e : entries) {
    std::string shape;
    for (int d : e.shape)
      shape += (shape.empty() ? "" : ",") + std::to_string(d);
    header += (offset ? "," : "") + std::string("\"") + e.name + "\":{\"dtype\":\"" + e.dtype +
              "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + e.bytes) + "]}";
    offset += e.bytes;
  }
  header += "}";
  fs::create_directories(dir);
  test::write_bytes(dir / "model.safetensors", test::raw_safetensors(header, offset));
  std::ofstream(dir / "config.json") << R"({"model_type": "gpt2"})";
}

std::vector<std::string> modules(const TargetSelection& s) {
  std::vector<std::string> out;
  for (const auto& t : s.targets)
    out.push_back(t.module);
  return out;
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  FAIL("no error");
  return ErrorKind::Internal;
}

}  // namespace

TEST_CASE("select_targets: the default rule, Conv1D from config.json, what is left alone",
          "[targets]") {
  test::TempDir dir("ckpt-targets");
  write_gpt2_like(dir.path());
  const Checkpoint in = Checkpoint::open(dir.path());
  const TargetSelection s = select_targets(in, {}, {"test"});
  CHECK(modules(s) == std::vector<std::string>{"transformer.h.0.attn.c_attn"});
  CHECK(s.fan_in_fan_out);
  CHECK(s.targets.front().conv1d);
  CHECK_FALSE(s.targets.front().embedding);
  // Every 2-D tensor is a candidate module (PEFT target_modules); linear weights not targeted
  // (the int8 one, the embedding, the head) are what a quantized output keeps in float.
  CHECK(s.candidates.size() == 4);
  CHECK(s.left_alone ==
        std::vector<std::string>{"transformer.wte", "transformer.h.0.mlp.c_fc", "lm_head"});
  CHECK(s.skipped.empty());
}

TEST_CASE("select_targets: a named tensor that cannot be a target is an error or a skip",
          "[targets]") {
  test::TempDir dir("ckpt-targets");
  write_gpt2_like(dir.path());
  const Checkpoint in = Checkpoint::open(dir.path());
  TargetOptions bias;
  bias.target = {R"(.*c_attn\.bias)", "c_attn"};
  TargetOptions int8;
  int8.target = {"c_fc", "c_attn"};
  // Commands that write weights refuse, naming the tensor.
  CHECK(kind_of([&] { select_targets(in, bias, {"test"}); }) == ErrorKind::Usage);
  CHECK_THROWS_WITH(select_targets(in, bias, {"test"}),
                    Catch::Contains("c_attn.bias") && Catch::Contains("not a matrix"));
  CHECK(kind_of([&] { select_targets(in, int8, {"test"}); }) == ErrorKind::Unsupported);
  CHECK_THROWS_WITH(select_targets(in, int8, {"test"}), Catch::Contains("mlp.c_fc.weight"));
  // Analysis lists them as skipped and goes on with the rest.
  const TargetPolicy analysis{"test", false, true, false};
  const auto s = select_targets(in, bias, analysis);
  CHECK(modules(s) == std::vector<std::string>{"transformer.h.0.attn.c_attn"});
  REQUIRE(s.skipped.size() == 1);
  CHECK(s.skipped.front().tensor->info.name == "transformer.h.0.attn.c_attn.bias");
  CHECK(s.skipped.front().reason == "matched but 1-D, not a matrix");
  CHECK(select_targets(in, int8, analysis).skipped.size() == 1);
}

TEST_CASE("select_targets: embeddings by policy, and no target at all", "[targets]") {
  test::TempDir dir("ckpt-targets");
  write_gpt2_like(dir.path());
  const Checkpoint in = Checkpoint::open(dir.path());
  TargetOptions wte;
  wte.target = {"wte"};
  const auto s = select_targets(in, wte, {"test"});
  REQUIRE(s.targets.size() == 1);
  CHECK(s.targets.front().embedding);
  CHECK_THROWS_WITH(select_targets(in, wte, {"lq-decompose", true, false, true}),
                    Catch::Contains("transformer.wte.weight") &&
                        Catch::Contains("lq-decompose adapts linear weights only"));
  TargetOptions none;
  none.target = {"nothing_here"};
  CHECK_THROWS_WITH(select_targets(in, none, {"test"}),
                    Catch::Contains("--target matches no 2-D float weight"));
  CHECK(select_targets(in, none, {"test", true, true, false}).targets.empty());
  TargetOptions all_out;
  all_out.exclude = {"c_attn"};
  CHECK_THROWS_WITH(select_targets(in, all_out, {"test"}),
                    Catch::Contains("no linear weight to decompose"));
}
