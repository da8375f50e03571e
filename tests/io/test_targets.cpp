// Target selection: PEFT-style suffixes, regexes (full match), --exclude, default selection,
// GPT-2 Conv1D detection.
#include <catch2/catch.hpp>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/targets.hpp"

using namespace ckpt;

namespace {

TensorInfo info(const std::string& name, Shape shape, DType dtype = DType::F32) {
  return {name, dtype, std::move(shape), 0, 0};
}

bool picks(const TargetSelector& s, const std::string& name, Shape shape = {8, 8}) {
  return s.decide(info(name, std::move(shape))).selected;
}

}  // namespace

TEST_CASE("default selection: 2-D float .weight, not embeddings or heads", "[targets]") {
  const TargetSelector s({}, std::nullopt);
  CHECK(picks(s, "model.layers.0.self_attn.q_proj.weight"));
  CHECK(picks(s, "model.layers.0.mlp.down_proj.weight"));
  CHECK_FALSE(picks(s, "model.layers.0.self_attn.q_proj.bias", {8}));
  CHECK_FALSE(picks(s, "model.layers.0.input_layernorm.weight", {8}));
  CHECK_FALSE(picks(s, "model.embed_tokens.weight"));
  CHECK_FALSE(picks(s, "lm_head.weight"));
  CHECK_FALSE(picks(s, "transformer.wte.weight"));
  CHECK_FALSE(picks(s, "transformer.wpe.weight"));
  CHECK_FALSE(picks(s, "model.decoder.embed_positions.weight"));
  CHECK_FALSE(picks(s, "conv.weight", {8, 8, 3, 3}));
  CHECK_FALSE(s.decide(info("x.weight", {8, 8}, DType::I8)).selected);
  CHECK(s.decide(info("model.embed_tokens.weight", {8, 8})).reason == "embedding or output head");
  CHECK_FALSE(s.fan_in_fan_out());
}

TEST_CASE("target suffixes match module-name components the PEFT way", "[targets]") {
  TargetOptions o;
  o.target = {"q_proj", "v_proj"};
  const TargetSelector s(o, std::nullopt);
  CHECK(picks(s, "model.layers.0.self_attn.q_proj.weight"));
  CHECK(picks(s, "model.layers.3.self_attn.v_proj.weight"));
  CHECK_FALSE(picks(s, "model.layers.0.self_attn.k_proj.weight"));
  CHECK_FALSE(picks(s, "model.layers.0.self_attn.xq_proj.weight"));  // suffix after a dot only
  CHECK(picks(s, "q_proj.weight"));                                  // or the whole name
  const auto d = s.decide(info("model.layers.0.self_attn.q_proj.bias", {8}));
  CHECK_FALSE(d.selected);
  // An explicit target may pick an embedding.
  TargetOptions e;
  e.target = {"embed_tokens"};
  CHECK(picks(TargetSelector(e, std::nullopt), "model.embed_tokens.weight"));
}

TEST_CASE("target regexes are full matches and exclude wins", "[targets]") {
  TargetOptions o;
  o.target = {R"(.*layers\.[01]\..*_proj)"};
  o.exclude = {"k_proj"};
  const TargetSelector s(o, std::nullopt);
  CHECK(picks(s, "model.layers.0.self_attn.q_proj.weight"));
  CHECK(picks(s, "model.layers.1.mlp.up_proj.weight"));
  CHECK_FALSE(picks(s, "model.layers.2.self_attn.q_proj.weight"));
  CHECK_FALSE(picks(s, "model.layers.0.self_attn.k_proj.weight"));
  CHECK(s.decide(info("model.layers.0.self_attn.k_proj.weight", {8, 8})).reason ==
        "excluded by --exclude");
  // Partial matches do not count (re.fullmatch).
  TargetOptions p;
  p.target = {"layers\\.0"};
  CHECK_FALSE(picks(TargetSelector(p, std::nullopt), "model.layers.0.self_attn.q_proj.weight"));
  // Exclude on the default selection.
  TargetOptions x;
  x.exclude = {"^.*mlp.*$"};
  const TargetSelector sx(x, std::nullopt);
  CHECK_FALSE(picks(sx, "model.layers.0.mlp.up_proj.weight"));
  CHECK(picks(sx, "model.layers.0.self_attn.o_proj.weight"));
}

TEST_CASE("an invalid regex is a usage error", "[targets]") {
  TargetOptions o;
  o.target = {"q_proj(["};
  try {
    TargetSelector s(o, std::nullopt);
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Usage);
    CHECK(std::string(e.what()).find("q_proj([") != std::string::npos);
  }
}

TEST_CASE("Conv1D (in, out storage) detection from model_type or the flag", "[targets]") {
  const nlohmann::json gpt2 = {{"model_type", "gpt2"}};
  const nlohmann::json llama = {{"model_type", "llama"}};
  CHECK(TargetSelector({}, gpt2).fan_in_fan_out());
  CHECK(TargetSelector({}, gpt2).decide(info("h.0.attn.c_attn.weight", {8, 24})).transposed);
  CHECK_FALSE(TargetSelector({}, llama).fan_in_fan_out());
  CHECK_FALSE(TargetSelector({}, nlohmann::json::array()).fan_in_fan_out());
  CHECK_FALSE(TargetSelector({}, nlohmann::json{{"model_type", 3}}).fan_in_fan_out());
  TargetOptions force;
  force.fan_in_fan_out = true;
  CHECK(TargetSelector(force, llama).fan_in_fan_out());
  force.fan_in_fan_out = false;
  CHECK_FALSE(TargetSelector(force, gpt2).fan_in_fan_out());
  // GPTBigCode builds its attention from nn.Linear (modeling_gpt_bigcode.py), unlike GPT-2.
  CHECK_FALSE(model_type_uses_conv1d("gpt_bigcode"));
  CHECK(model_type_uses_conv1d("gpt2"));
  CHECK_FALSE(model_type_uses_conv1d("opt"));
  CHECK(TargetSelector::module_name("a.b.q_proj.weight") == "a.b.q_proj");
  CHECK(TargetSelector::module_name("a.b.bias") == "a.b.bias");
}
