// The PEFT adapter directory as written: file names, safetensors keys, shapes, metadata and the
// adapter_config.json fields PEFT reads (peft-anchors §1.13-1.15).
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {
nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}
}  // namespace

TEST_CASE("write_lora_adapter writes PEFT's layout", "[adapters][lora]") {
  test::TempDir dir;
  LoraModule q{"model.layers.0.self_attn.q_proj",
               false,
               2,
               6,
               4,
               test::gaussian(12, 1),
               test::gaussian(8, 2),
               {},
               {},
               false};
  LoraModule e{"model.embed_tokens", true, 2,  10,   3, test::gaussian(20, 3),
               test::gaussian(6, 4), {},   {}, false};
  LoraConfig c;
  c.r = 2;
  c.lora_alpha = 2;
  c.target_modules = {"q_proj", "embed_tokens"};
  c.rank_pattern = {{"model.layers.0.self_attn.q_proj", 2}};
  c.alpha_pattern = {{"model.layers.0.self_attn.q_proj", 2}};
  c.base_model_name_or_path = "residual";
  write_lora_adapter(dir.path(), c, {q, e}, DType::BF16);

  const auto ck = Checkpoint::open(dir / "adapter_model.safetensors");
  REQUIRE(ck.tensors().size() == 4);
  const auto* a = ck.find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  const auto* b = ck.find("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->info.shape == Shape{2, 6});
  CHECK(b->info.shape == Shape{4, 2});
  CHECK(a->info.dtype == DType::BF16);
  const auto* ea = ck.find("base_model.model.model.embed_tokens.lora_embedding_A");
  const auto* eb = ck.find("base_model.model.model.embed_tokens.lora_embedding_B");
  REQUIRE(ea);
  REQUIRE(eb);
  CHECK(ea->info.shape == Shape{2, 10});
  CHECK(eb->info.shape == Shape{3, 2});
  REQUIRE(ck.metadata().size() == 1);
  CHECK(ck.metadata()[0] == std::pair<std::string, std::string>{"format", "pt"});

  const auto j = read_json(dir / "adapter_config.json");
  CHECK(j["peft_type"] == "LORA");
  CHECK(j["r"] == 2);
  CHECK(j["lora_alpha"].is_number_integer());
  CHECK(j["init_lora_weights"] == true);  // never "pissa": PEFT would redo the SVD on load
  CHECK(j["use_rslora"] == false);
  CHECK(j["fan_in_fan_out"] == false);
  CHECK(j["lora_dropout"] == 0.0);
  CHECK(j["bias"] == "none");
  CHECK(j["task_type"] == "CAUSAL_LM");
  CHECK(j["base_model_name_or_path"] == "residual");
  CHECK(j["target_modules"] == nlohmann::json({"q_proj", "embed_tokens"}));
  CHECK(j["rank_pattern"]["model.layers.0.self_attn.q_proj"] == 2);
  CHECK(j["alpha_pattern"]["model.layers.0.self_attn.q_proj"] == 2);
}

TEST_CASE("write_sorsa_adapter: sorsa_A, sorsa_S, sorsa_B and a versioned config",
          "[adapters][sorsa]") {
  test::TempDir dir;
  SorsaModule m{"h.0.attn", 3, 5, 7, test::gaussian(15, 1), {3.f, 2.f, 1.f}, test::gaussian(21, 2)};
  LoraConfig c;
  c.r = 3;
  c.lora_alpha = 3;
  c.target_modules = {"attn"};
  write_sorsa_adapter(dir.path(), c, {m});
  const auto ck = Checkpoint::open(dir / "adapter_model.safetensors");
  CHECK(ck.find("base_model.model.h.0.attn.sorsa_A")->info.shape == Shape{3, 5});
  CHECK(ck.find("base_model.model.h.0.attn.sorsa_S")->info.shape == Shape{3});
  CHECK(ck.find("base_model.model.h.0.attn.sorsa_B")->info.shape == Shape{7, 3});
  const auto j = read_json(dir / "adapter_config.json");
  CHECK(j["ckptkit_format"] == "sorsa");
  CHECK(j["format_version"] == kSorsaFormatVersion);
  CHECK(j["r"] == 3);
}

TEST_CASE("target_modules_for: leaf names only when they select exactly the adapted set",
          "[adapters]") {
  const std::vector<std::string> all = {"m.l.0.q_proj", "m.l.0.v_proj", "m.l.1.q_proj",
                                        "m.l.1.v_proj"};
  CHECK(target_modules_for({"m.l.0.q_proj", "m.l.1.q_proj"}, all) ==
        std::vector<std::string>{"q_proj"});
  CHECK(target_modules_for({"m.l.0.q_proj"}, all) == std::vector<std::string>{"m.l.0.q_proj"});
}
