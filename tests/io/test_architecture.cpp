#include <catch2/catch.hpp>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/io/architecture.hpp"

using namespace ckpt;

namespace {

ModuleNaming naming_of(std::vector<std::string> names, const std::string& model_type,
                       TaskType task = TaskType::CausalLm,
                       std::optional<std::string> prefix = std::nullopt) {
  return module_naming(names, nlohmann::json{{"model_type", model_type}}, task, prefix);
}

}  // namespace

TEST_CASE("the architecture table covers the families the issue names, each once") {
  for (const char* t :
       {"llama",      "mistral",     "mixtral",     "qwen2",   "qwen2_moe", "qwen3",
        "gemma",      "gemma2",      "gemma3_text", "phi",     "phi3",      "gpt2",
        "gpt_neo",    "gpt_neox",    "gptj",        "bloom",   "opt",       "falcon",
        "starcoder2", "gpt_bigcode", "bert",        "roberta", "distilbert"}) {
    INFO(t);
    const Architecture* a = find_architecture(t);
    REQUIRE(a);
    CHECK(!a->prefix.empty());
    CHECK(!a->heads.empty());
    CHECK(a->source.find("modeling_") != std::string_view::npos);
  }
  CHECK(find_architecture("mystery") == nullptr);
  CHECK(find_architecture("gpt_neox")->prefix == "gpt_neox");
  CHECK(find_architecture("gpt_bigcode")->conv1d.empty());  // nn.Linear, unlike gpt2
  CHECK(find_architecture("gpt2")->conv1d.size() == 4);
}

TEST_CASE("adapter names follow the task model whichever layout the checkpoint has") {
  const auto base = naming_of({"h.0.attn.c_attn.weight", "wte.weight"}, "gpt2");
  const auto task = naming_of({"transformer.h.0.attn.c_attn.weight", "lm_head.weight"}, "gpt2");
  CHECK(base.stored_prefix.empty());
  CHECK(task.stored_prefix == "transformer");
  CHECK(base.peft_module("h.0.attn.c_attn") == "transformer.h.0.attn.c_attn");
  CHECK(task.peft_module("transformer.h.0.attn.c_attn") == "transformer.h.0.attn.c_attn");
  CHECK(task.peft_module("lm_head") == "lm_head");  // a head stays outside the base model
  CHECK(*base.is_conv1d("h.3.mlp.c_fc"));
  CHECK_FALSE(*base.is_conv1d("wte"));
  // Reading: the adapter's name first, then without / with the prefix.
  CHECK(base.checkpoint_candidates("transformer.h.0.attn.c_attn") ==
        std::vector<std::string>{"transformer.h.0.attn.c_attn", "h.0.attn.c_attn"});
  CHECK(task.checkpoint_candidates("h.0.attn.c_attn") ==
        std::vector<std::string>{"h.0.attn.c_attn", "transformer.h.0.attn.c_attn"});
  // FEATURE_EXTRACTION wraps the bare base model; QUESTION_ANS of the llama family keeps
  // `transformer` (transformers: "For BC").
  const auto fe = naming_of({"model.layers.0.q_proj.weight"}, "llama", TaskType::FeatureExtraction);
  CHECK(fe.peft_module("model.layers.0.q_proj") == "layers.0.q_proj");
  const auto qa = naming_of({"model.layers.0.q_proj.weight"}, "llama", TaskType::QuestionAns);
  CHECK(qa.peft_module("model.layers.0.q_proj") == "transformer.layers.0.q_proj");
  CHECK(qa.checkpoint_candidates("transformer.layers.0.q_proj")[1] == "model.layers.0.q_proj");
  // Unknown families: names as stored, unless --module-prefix says otherwise.
  const auto unknown = naming_of({"blocks.0.q.weight"}, "mystery");
  CHECK(unknown.unknown);
  CHECK(unknown.peft_module("blocks.0.q") == "blocks.0.q");
  CHECK_FALSE(unknown.is_conv1d("blocks.0.q").has_value());
  CHECK(unknown.assumption.find("--module-prefix") != std::string::npos);
  const auto net = naming_of({"blocks.0.q.weight"}, "mystery", TaskType::CausalLm, "net");
  CHECK(net.peft_module("blocks.0.q") == "net.blocks.0.q");
  // Detection needs the prefix as a whole component: "transformers.x" is not "transformer.x".
  CHECK(naming_of({"transformers.h.0.weight"}, "gpt2").stored_prefix.empty());
}

TEST_CASE("task types parse as PEFT spells them") {
  CHECK(parse_task_type("CAUSAL_LM") == TaskType::CausalLm);
  CHECK(parse_task_type("seq_cls") == TaskType::SeqCls);
  CHECK(parse_task_type("question-ans") == TaskType::QuestionAns);
  CHECK_FALSE(parse_task_type("CLS").has_value());
  CHECK(task_type_name(TaskType::FeatureExtraction) == "FEATURE_EXTRACTION");
}

TEST_CASE("layers_to_transform reads the layer index as PEFT's regexes do") {
  CHECK(peft_layer_index("model.layers.3.self_attn.q_proj", {}) == 3);
  CHECK(peft_layer_index("transformer.h.11.attn.c_attn", {"h"}) == 11);
  CHECK_FALSE(peft_layer_index("transformer.h.11.attn.c_attn", {"layers"}).has_value());
  // The number must follow a component that is not the first, and be followed by one.
  CHECK_FALSE(peft_layer_index("layers.3.q", {}).has_value());
  CHECK_FALSE(peft_layer_index("a.b.3", {}).has_value());
  // Greedy: the last match counts (MoE experts inside a layer).
  CHECK(peft_layer_index("model.layers.2.mlp.experts.7.w1", {}) == 7);
  CHECK(peft_layer_index("model.layers.2.mlp.experts.7.w1", {"layers"}) == 2);
}
