// The GGUF writer and llama.cpp's naming rules (formats/gguf, formats/gguf_names); the end-to-end
// check against llama.cpp's own file is tests/cli/test_export_gguf.py.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/formats/gguf.hpp"
#include "ckptkit/formats/gguf_names.hpp"

using namespace ckpt;

TEST_CASE("HF weight names map to llama.cpp's tensors", "[gguf]") {
  CHECK(gguf_tensor_name("model.layers.3.self_attn.q_proj.weight") == "blk.3.attn_q.weight");
  CHECK(gguf_tensor_name("model.layers.12.mlp.down_proj.weight") == "blk.12.ffn_down.weight");
  CHECK(gguf_tensor_name("model.layers.0.self_attn.o_proj.weight") == "blk.0.attn_output.weight");
  CHECK(gguf_tensor_name("model.embed_tokens.weight") == "token_embd.weight");
  CHECK(gguf_tensor_name("lm_head.weight") == "output.weight");
  CHECK_FALSE(gguf_tensor_name("model.layers.x.mlp.up_proj.weight"));
  CHECK_FALSE(gguf_tensor_name("model.layers.1.mlp.router.weight"));
  CHECK_FALSE(gguf_tensor_name("model.layers.-1.mlp.up_proj.weight"));
  CHECK_FALSE(gguf_tensor_name("model.layers.1.self_attn.q_proj.bias"));
}

TEST_CASE("LlamaModel.permute as a row order", "[gguf]") {
  // 8 rows, 2 heads: each head's halves [0..1 | 2..3] interleave to 0, 2, 1, 3.
  CHECK(rope_row_order(8, 2) == std::vector<std::int64_t>{0, 2, 1, 3, 4, 6, 5, 7});
  CHECK(rope_row_order(4, 1) == std::vector<std::int64_t>{0, 2, 1, 3});
}

TEST_CASE("architectures and head counts come from config.json, checked", "[gguf]") {
  auto arch = gguf_architecture({{"architectures", {"MistralForCausalLM"}},
                                 {"num_attention_heads", 32},
                                 {"num_key_value_heads", 8}});
  REQUIRE(arch);
  CHECK(arch->name == "llama");
  CHECK(arch->permute_qk);
  CHECK(rope_permute_heads(*arch, "model.layers.0.self_attn.q_proj.weight") == 32);
  CHECK(rope_permute_heads(*arch, "model.layers.0.self_attn.k_proj.weight") == 8);
  CHECK(rope_permute_heads(*arch, "model.layers.0.self_attn.v_proj.weight") == 0);
  auto qwen =
      gguf_architecture({{"architectures", {"Qwen2ForCausalLM"}}, {"num_attention_heads", 4}});
  REQUIRE(qwen);
  CHECK_FALSE(qwen->permute_qk);
  CHECK(qwen->n_head_kv == 4);
  CHECK_FALSE(
      gguf_architecture({{"architectures", {"GPT2LMHeadModel"}}, {"num_attention_heads", 4}}));
  CHECK_FALSE(gguf_architecture({{"architectures", {"LlamaForCausalLM"}}}));
  CHECK_FALSE(gguf_architecture({{"architectures", {"LlamaForCausalLM"}},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", -2}}));
  CHECK_FALSE(gguf_architecture(
      {{"architectures", {"LlamaForCausalLM"}}, {"num_attention_heads", std::int64_t{1} << 40}}));
}

TEST_CASE("Q8_0 blocks: f16 scale max/127, codes rounded half away from zero", "[gguf]") {
  std::vector<float> x(64, 0.0f);
  x[0] = 127.0f;
  x[1] = -63.5f;  // exactly half: away from zero, -64
  x[2] = 0.5f;    // 0.5 -> 1
  const auto b = gguf::encode_q8_0(x);
  REQUIRE(b.size() == 68);
  std::uint16_t d;
  std::memcpy(&d, b.data(), 2);
  CHECK(f16_to_f32(d) == 1.0f);
  CHECK(static_cast<std::int8_t>(b[2]) == 127);
  CHECK(static_cast<std::int8_t>(b[3]) == -64);
  CHECK(static_cast<std::int8_t>(b[4]) == 1);
  std::memcpy(&d, b.data() + 34, 2);  // an all-zero block: scale 0, codes 0
  CHECK(d == 0);
  for (int i = 36; i < 68; ++i)
    CHECK(static_cast<int>(b[i]) == 0);
}

TEST_CASE("a GGUF file: header, typed keys, tensor infos, aligned data", "[gguf]") {
  gguf::GgufFile f;
  f.set_string("general.type", "adapter");
  f.set_f32("adapter.lora.alpha", 8.0f);
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  f.add_tensor("t.lora_a", v, 2, 3, gguf::TensorType::F32);
  const auto bytes = f.bytes();
  REQUIRE(bytes.size() % 32 == 0);
  CHECK(std::memcmp(bytes.data(), "GGUF", 4) == 0);
  std::uint32_t version;
  std::uint64_t tensors, keys;
  std::memcpy(&version, bytes.data() + 4, 4);
  std::memcpy(&tensors, bytes.data() + 8, 8);
  std::memcpy(&keys, bytes.data() + 16, 8);
  CHECK(version == 3);
  CHECK(tensors == 1);
  CHECK(keys == 2);
  // The data section is the last 32 bytes: 6 floats and zero padding.
  float first;
  std::memcpy(&first, bytes.data() + bytes.size() - 32, 4);
  CHECK(first == 1.0f);
}
