// Reading PEFT LoRA adapters: config parsing, rank/alpha patterns, ΔW = s·B·A in base layout
// (fan_in_fan_out, embeddings, rsLoRA), and errors for adapters that do not fit the base.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/writer.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using test::TempDir;

namespace {

std::vector<float> randn(std::size_t n, const std::string& stream) {
  Rng rng(3, stream);
  std::vector<float> v(n);
  for (auto& x : v)
    x = static_cast<float>(rng.normal());
  return v;
}

/// ΔW[o][i] = s · Σ_r B[o][r]·A[r][i], the definition, by loops.
std::vector<double> naive_delta(const std::vector<float>& A, const std::vector<float>& B, int r,
                                std::int64_t in, std::int64_t out, double s) {
  std::vector<double> d(static_cast<std::size_t>(out * in), 0.0);
  for (std::int64_t o = 0; o < out; ++o)
    for (std::int64_t i = 0; i < in; ++i)
      for (int k = 0; k < r; ++k)
        d[static_cast<std::size_t>(o * in + i)] +=
            s * B[static_cast<std::size_t>(o * r + k)] * A[static_cast<std::size_t>(k * in + i)];
  return d;
}

struct Factor {
  std::string key;
  std::int64_t rows, cols;
  std::vector<float> values;
};

void write_adapter(const std::filesystem::path& dir, const std::string& config,
                   const std::vector<Factor>& factors) {
  std::filesystem::create_directories(dir);
  write_text_file(dir / "adapter_config.json", config);
  std::vector<OwnedTensor> ts;
  for (const auto& f : factors)
    ts.push_back(make_tensor(f.key, DType::F32, {f.rows, f.cols}, f.values));
  write_safetensors_file(dir / "adapter_model.safetensors", ts, {{"format", "pt"}});
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::Internal;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("PEFT pattern keys match by regex suffix on dotted boundaries") {
  CHECK(peft_pattern_matches("q_proj", "model.layers.0.self_attn.q_proj"));
  CHECK(peft_pattern_matches("q_proj", "q_proj"));
  CHECK_FALSE(peft_pattern_matches("q_proj", "model.layers.0.self_attn.xq_proj"));
  CHECK(peft_pattern_matches("layers.1.self_attn.q_proj", "model.layers.1.self_attn.q_proj"));
  CHECK_FALSE(
      peft_pattern_matches("layers.1.self_attn.q_proj", "model.layers.11.self_attn.q_proj"));
  CHECK(peft_pattern_matches("layers\\.[0-3]\\.self_attn\\.v_proj",
                             "model.layers.2.self_attn.v_proj"));
  CHECK_FALSE(peft_pattern_matches("layers\\.[0-3]\\.self_attn\\.v_proj",
                                   "model.layers.5.self_attn.v_proj"));
}

TEST_CASE("pattern keys that make a backtracking regex explode still answer (fuzz regression)") {
  // fuzz_adapter_config, 2026-12-04: with the default std::regex executor these rank_pattern keys
  // ran for minutes on "model.layers.0.self_attn.q_proj" (exponential backtracking). The
  // breadth-first executor answers at once; with the old one this test hangs until ctest's timeout.
  const std::string m = "model.layers.0.self_attn.q_proj";
  CHECK_FALSE(peft_pattern_matches("l*a*0\\.ljha", m));
  CHECK_FALSE(peft_pattern_matches("l*ayers\\n**.***0\\.ljha", m));
  CHECK(peft_pattern_matches("l*a*y*e*r*s*\\.0\\..*q_proj", m));
  const auto c = parse_lora_config(
      R"({"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj"],
          "rank_pattern": {"l*a*0\\.ljha": 4, "q_proj": 8}})",
      "adapter_config.json");
  CHECK(c.rank_alpha_for(m).first == 8);
}

TEST_CASE("adapter_config.json: defaults, patterns in file order, bad input") {
  const LoraConfig d = parse_lora_config(R"({"peft_type": "LORA"})", "cfg");
  CHECK(d.r == 8);
  CHECK(d.lora_alpha == 8);
  CHECK_FALSE(d.use_rslora);
  const LoraConfig c = parse_lora_config(
      R"({"peft_type":"LORA","r":4,"lora_alpha":16,"use_rslora":true,"fan_in_fan_out":false,
          "target_modules":["q_proj","v_proj"],"rank_pattern":{"v_proj":2,"q_proj":6},
          "alpha_pattern":{"q_proj":3.5},"task_type":"CAUSAL_LM","base_model_name_or_path":null})",
      "cfg");
  CHECK(c.r == 4);
  REQUIRE(c.rank_pattern.size() == 2);
  CHECK(c.rank_pattern[0].first == "v_proj");  // file order kept
  CHECK(c.rank_alpha_for("m.q_proj") == std::pair<int, double>{6, 3.5});
  CHECK(c.rank_alpha_for("m.v_proj") == std::pair<int, double>{2, 16.0});
  CHECK(c.rank_alpha_for("m.k_proj") == std::pair<int, double>{4, 16.0});
  CHECK(c.scaling_for("m.q_proj") == Approx(3.5 / std::sqrt(6.0)));
  CHECK(c.extra.contains("task_type"));
  CHECK(kind_of([] { parse_lora_config("{", "cfg"); }) == ErrorKind::Format);
  CHECK(kind_of([] { parse_lora_config(R"({"r": 4})", "cfg"); }) == ErrorKind::Format);
  CHECK(kind_of([] { parse_lora_config(R"({"peft_type": "IA3"})", "cfg"); }) ==
        ErrorKind::Unsupported);
  CHECK(kind_of([] { parse_lora_config(R"({"peft_type": "LORA", "r": "8"})", "cfg"); }) ==
        ErrorKind::Format);
  CHECK(parse_lora_config(R"({"peft_type": "LORA", "use_dora": true})", "cfg").use_dora);
  CHECK(kind_of([] { parse_lora_config(R"({"peft_type": "LORA", "use_dora": 1})", "cfg"); }) ==
        ErrorKind::Format);
  const LoraConfig layers = parse_lora_config(
      R"({"peft_type": "LORA", "layers_to_transform": [0, 2], "layers_pattern": "h"})", "cfg");
  CHECK(layers.layers_to_transform == std::vector<int>{0, 2});
  CHECK(layers.layers_pattern == std::vector<std::string>{"h"});
}

/// resolve_lora_adapter against a base of unknown family: names must match as they are.
void check_adapter_against(LoraAdapter a, const Checkpoint& base) {
  resolve_lora_adapter(a, base, module_naming({}, std::nullopt, TaskType::CausalLm));
}

TEST_CASE("read a hand-built adapter: ranks, scaling and dense deltas match the definition") {
  TempDir tmp;
  const std::int64_t in = 6, out = 5, vocab = 7, dim = 4;
  const auto qa = randn(2 * in, "qa"), qb = randn(out * 2, "qb");     // r = 2 (default)
  const auto va = randn(3 * in, "va"), vb = randn(out * 3, "vb");     // r = 3 (rank_pattern)
  const auto ea = randn(2 * vocab, "ea"), eb = randn(dim * 2, "eb");  // embedding, r = 2
  const std::string P = "base_model.model.";
  write_adapter(tmp / "ad",
                R"({"peft_type":"LORA","r":2,"lora_alpha":4,"rank_pattern":{"v_proj":3},
                    "alpha_pattern":{"layers.0.v_proj":9}})",
                {{P + "model.layers.0.q_proj.lora_A.weight", 2, in, qa},
                 {P + "model.layers.0.q_proj.lora_B.weight", out, 2, qb},
                 {P + "model.layers.0.v_proj.lora_A.weight", 3, in, va},
                 {P + "model.layers.0.v_proj.lora_B.weight", out, 3, vb},
                 {P + "model.embed_tokens.lora_embedding_A", 2, vocab, ea},
                 {P + "model.embed_tokens.lora_embedding_B", dim, 2, eb}});
  const LoraAdapter a = read_lora_adapter(tmp / "ad");
  REQUIRE(a.modules.size() == 3);
  std::map<std::string, const LoraModule*> by;
  for (const auto& m : a.modules)
    by[m.module] = &m;
  REQUIRE(by.count("model.layers.0.q_proj"));  // prefix stripped
  const LoraModule& q = *by["model.layers.0.q_proj"];
  const LoraModule& v = *by["model.layers.0.v_proj"];
  const LoraModule& e = *by["model.embed_tokens"];
  CHECK(q.rank == 2);
  CHECK(v.rank == 3);
  CHECK(e.embedding);
  CHECK(lora_base_tensor(q) == "model.layers.0.q_proj.weight");
  CHECK(a.config.scaling_for(q.module) == Approx(2.0));  // 4 / 2
  CHECK(a.config.scaling_for(v.module) == Approx(3.0));  // 9 / 3
  CHECK(lora_delta_shape(q, false) == Shape{out, in});
  CHECK(lora_delta_shape(e, false) == Shape{vocab, dim});

  auto check_delta = [](const std::vector<float>& got, const std::vector<double>& want,
                        bool transpose, std::int64_t rows, std::int64_t cols) {
    double err = 0, scale = 0;
    for (std::int64_t o = 0; o < rows; ++o)
      for (std::int64_t i = 0; i < cols; ++i) {
        const double w = want[static_cast<std::size_t>(o * cols + i)];
        const double g = transpose ? got[static_cast<std::size_t>(i * rows + o)]
                                   : got[static_cast<std::size_t>(o * cols + i)];
        err = std::max(err, std::abs(g - w));
        scale = std::max(scale, std::abs(w));
      }
    INFO("max |dW - naive| = " << err << " (max |dW| " << scale << ")");
    CHECK(err < 1e-5 * scale);
  };
  check_delta(lora_delta(a, q), naive_delta(q.A, q.B, 2, in, out, 2.0), false, out, in);
  check_delta(lora_delta(a, v), naive_delta(v.A, v.B, 3, in, out, 3.0), false, out, in);
  // Embedding: ΔW = (s·B·A)ᵀ, [vocab, dim]; B·A is [dim, vocab].
  check_delta(lora_delta(a, e), naive_delta(e.A, e.B, 2, vocab, dim, 2.0), true, dim, vocab);

  // The adapter fits a base with these tensors; a base without one is a format error naming it.
  write_safetensors_file(
      tmp / "base.safetensors",
      {make_tensor("model.layers.0.q_proj.weight", DType::F32, {out, in}, randn(out * in, "bq")),
       make_tensor("model.layers.0.v_proj.weight", DType::F32, {out, in}, randn(out * in, "bv")),
       make_tensor("model.embed_tokens.weight", DType::F32, {vocab, dim},
                   randn(vocab * dim, "be"))},
      {});
  const Checkpoint base = Checkpoint::open(tmp / "base.safetensors");
  CHECK_NOTHROW(check_adapter_against(a, base));
  write_safetensors_file(
      tmp / "other.safetensors",
      {make_tensor("model.layers.0.q_proj.weight", DType::F32, {out, in}, randn(out * in, "bq"))},
      {});
  const Checkpoint other = Checkpoint::open(tmp / "other.safetensors");
  const std::string msg = message_of([&] { check_adapter_against(a, other); });
  INFO(msg);
  CHECK(kind_of([&] { check_adapter_against(a, other); }) == ErrorKind::Format);
  CHECK(msg.find("model.layers.0.v_proj") != std::string::npos);
  write_safetensors_file(
      tmp / "wrong.safetensors",
      {make_tensor("model.layers.0.q_proj.weight", DType::F32, {in, out}, randn(out * in, "bq")),
       make_tensor("model.layers.0.v_proj.weight", DType::F32, {out, in}, randn(out * in, "bv")),
       make_tensor("model.embed_tokens.weight", DType::F32, {vocab, dim},
                   randn(vocab * dim, "be"))},
      {});
  CHECK(kind_of([&] { check_adapter_against(a, Checkpoint::open(tmp / "wrong.safetensors")); }) ==
        ErrorKind::Format);
}

TEST_CASE("fan_in_fan_out and rsLoRA: the delta is (s·B·A)ᵀ with s = alpha/sqrt(r)") {
  TempDir tmp;
  const std::int64_t in = 4, out = 6;
  const auto A = randn(4 * in, "fa"), B = randn(out * 4, "fb");
  write_adapter(
      tmp / "ad",
      R"({"peft_type":"LORA","r":4,"lora_alpha":8,"use_rslora":true,"fan_in_fan_out":true})",
      {{"base_model.model.h.0.attn.c_attn.lora_A.weight", 4, in, A},
       {"base_model.model.h.0.attn.c_attn.lora_B.weight", out, 4, B}});
  const LoraAdapter a =
      read_lora_adapter(tmp / "ad" / "adapter_config.json");  // a path to the config works too
  REQUIRE(a.modules.size() == 1);
  const auto& m = a.modules[0];
  CHECK(lora_delta_shape(m, true) == Shape{in, out});
  const auto want = naive_delta(A, B, 4, in, out, 8.0 / 2.0);
  const auto got = lora_delta(a, m);
  double err = 0;
  for (std::int64_t o = 0; o < out; ++o)
    for (std::int64_t i = 0; i < in; ++i)
      err = std::max(err, std::abs(got[static_cast<std::size_t>(i * out + o)] -
                                   want[static_cast<std::size_t>(o * in + i)]));
  INFO("max error " << err);
  CHECK(err < 1e-5);
}

TEST_CASE("malformed adapters are refused with the tensor named") {
  TempDir tmp;
  const auto A = randn(8, "a"), B = randn(8, "b");
  write_adapter(tmp / "onlyA", R"({"peft_type":"LORA","r":2})",
                {{"base_model.model.x.q.lora_A.weight", 2, 4, A}});
  const std::string msg = message_of([&] { read_lora_adapter(tmp / "onlyA"); });
  CHECK(msg.find("x.q") != std::string::npos);
  CHECK(kind_of([&] { read_lora_adapter(tmp / "onlyA"); }) == ErrorKind::Format);
  write_adapter(tmp / "rank", R"({"peft_type":"LORA","r":3})",
                {{"x.q.lora_A.weight", 2, 4, A}, {"x.q.lora_B.weight", 4, 2, B}});
  CHECK(kind_of([&] { read_lora_adapter(tmp / "rank"); }) == ErrorKind::Format);
  write_adapter(tmp / "dora", R"({"peft_type":"LORA","r":2})",
                {{"x.q.lora_A.weight", 2, 4, A},
                 {"x.q.lora_B.weight", 4, 2, B},
                 {"x.q.lora_magnitude_vector", 1, 4, randn(4, "m")}});
  // A magnitude vector without use_dora: PEFT would not load it; refused rather than dropped.
  CHECK(kind_of([&] { read_lora_adapter(tmp / "dora"); }) == ErrorKind::Format);
  write_adapter(tmp / "dora_on", R"({"peft_type":"LORA","r":2,"use_dora":true})",
                {{"x.q.lora_A.weight", 2, 4, A},
                 {"x.q.lora_B.weight", 4, 2, B},
                 {"x.q.lora_magnitude_vector", 1, 4, randn(4, "m")}});
  CHECK(read_lora_adapter(tmp / "dora_on").modules.at(0).magnitude.size() == 4);
  write_adapter(tmp / "dora_none", R"({"peft_type":"LORA","r":2,"use_dora":true})",
                {{"x.q.lora_A.weight", 2, 4, A}, {"x.q.lora_B.weight", 4, 2, B}});
  CHECK(message_of([&] { read_lora_adapter(tmp / "dora_none"); }).find("lora_magnitude_vector") !=
        std::string::npos);
  write_adapter(tmp / "lora_bias", R"({"peft_type":"LORA","r":2})",
                {{"x.q.lora_A.weight", 2, 4, A},
                 {"x.q.lora_B.weight", 4, 2, B},
                 {"x.q.lora_B.bias", 1, 4, randn(4, "m")}});
  CHECK(kind_of([&] { read_lora_adapter(tmp / "lora_bias"); }) == ErrorKind::Unsupported);
  CHECK(kind_of([&] { read_lora_adapter(tmp / "missing"); }) == ErrorKind::Usage);
}
