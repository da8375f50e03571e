#include "ckptkit/io/architecture.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace ckpt {
namespace {

using Names = std::span<const std::string_view>;

// Heads: the attributes of the task classes outside the base model (CausalLM,
// SequenceClassification, TokenClassification, QuestionAnswering, MaskedLM), read from each
// modeling file.
constexpr std::string_view kDecoderHeads[] = {"lm_head", "score", "qa_outputs"};
constexpr std::string_view kGptHeads[] = {"lm_head", "score", "classifier", "qa_outputs"};
constexpr std::string_view kPhiHeads[] = {"lm_head", "score", "classifier"};
constexpr std::string_view kGptjHeads[] = {"lm_head", "score", "qa_outputs"};
constexpr std::string_view kBigcodeHeads[] = {"lm_head", "score", "classifier"};
constexpr std::string_view kNeoxHeads[] = {"embed_out", "score", "classifier", "qa_outputs"};
constexpr std::string_view kBertHeads[] = {"cls", "classifier", "qa_outputs"};
constexpr std::string_view kRobertaHeads[] = {"lm_head", "classifier", "qa_outputs"};
constexpr std::string_view kDistilbertHeads[] = {"vocab_transform", "vocab_layer_norm",
                                                 "vocab_projector", "pre_classifier",
                                                 "classifier",      "qa_outputs"};
// transformers.pytorch_utils.Conv1D in GPT2Attention / GPT2MLP (c_attn, c_proj, q_attn, c_fc) and
// in OpenAIGPT's Attention / MLP.
constexpr std::string_view kGpt2Conv1d[] = {"c_attn", "c_proj", "c_fc", "q_attn"};
constexpr Names kNone{};

#define CKPT_MODELING(t) "transformers src/transformers/models/" t "/modeling_" t ".py"

constexpr std::array kArchitectures{
    Architecture{"llama", "model", "transformer", kNone, kDecoderHeads, CKPT_MODELING("llama")},
    Architecture{"mistral", "model", "transformer", kNone, kDecoderHeads, CKPT_MODELING("mistral")},
    Architecture{"mixtral", "model", "transformer", kNone, kDecoderHeads, CKPT_MODELING("mixtral")},
    Architecture{"qwen2", "model", "transformer", kNone, kDecoderHeads, CKPT_MODELING("qwen2")},
    Architecture{"qwen2_moe", "model", "transformer", kNone, kDecoderHeads,
                 CKPT_MODELING("qwen2_moe")},
    Architecture{"qwen3", "model", "transformer", kNone, kDecoderHeads, CKPT_MODELING("qwen3")},
    Architecture{"gemma", "model", "", kNone, kDecoderHeads, CKPT_MODELING("gemma")},
    Architecture{"gemma2", "model", "", kNone, kDecoderHeads, CKPT_MODELING("gemma2")},
    Architecture{"gemma3_text", "model", "", kNone, kDecoderHeads, CKPT_MODELING("gemma3")},
    Architecture{"phi", "model", "", kNone, kPhiHeads, CKPT_MODELING("phi")},
    Architecture{"phi3", "model", "", kNone, kDecoderHeads, CKPT_MODELING("phi3")},
    Architecture{"starcoder2", "model", "", kNone, kDecoderHeads, CKPT_MODELING("starcoder2")},
    Architecture{"opt", "model", "", kNone, kDecoderHeads, CKPT_MODELING("opt")},
    Architecture{"gpt2", "transformer", "", kGpt2Conv1d, kGptHeads, CKPT_MODELING("gpt2")},
    Architecture{"openai-gpt", "transformer", "", kGpt2Conv1d, kGptHeads,
                 "transformers src/transformers/models/openai/modeling_openai.py"},
    Architecture{"gpt_neo", "transformer", "", kNone, kGptHeads, CKPT_MODELING("gpt_neo")},
    Architecture{"gpt_neox", "gpt_neox", "", kNone, kNeoxHeads, CKPT_MODELING("gpt_neox")},
    Architecture{"gptj", "transformer", "", kNone, kGptjHeads, CKPT_MODELING("gptj")},
    Architecture{"bloom", "transformer", "", kNone, kGptHeads, CKPT_MODELING("bloom")},
    Architecture{"falcon", "transformer", "", kNone, kGptHeads, CKPT_MODELING("falcon")},
    Architecture{"gpt_bigcode", "transformer", "", kNone, kBigcodeHeads,
                 CKPT_MODELING("gpt_bigcode")},
    Architecture{"bert", "bert", "", kNone, kBertHeads, CKPT_MODELING("bert")},
    Architecture{"roberta", "roberta", "", kNone, kRobertaHeads, CKPT_MODELING("roberta")},
    Architecture{"distilbert", "distilbert", "", kNone, kDistilbertHeads,
                 CKPT_MODELING("distilbert")},
};

#undef CKPT_MODELING

bool has_prefix(std::string_view name, std::string_view prefix) {
  return !prefix.empty() && name.size() > prefix.size() && name.starts_with(prefix) &&
         name[prefix.size()] == '.';
}

std::string joined(std::string_view prefix, std::string_view rest) {
  return prefix.empty() ? std::string(rest) : std::string(prefix) + "." + std::string(rest);
}

std::string_view leaf_of(std::string_view module) {
  const auto dot = module.rfind('.');
  return dot == std::string_view::npos ? module : module.substr(dot + 1);
}

}  // namespace

std::string_view task_type_name(TaskType t) {
  switch (t) {
    case TaskType::CausalLm:
      return "CAUSAL_LM";
    case TaskType::SeqCls:
      return "SEQ_CLS";
    case TaskType::TokenCls:
      return "TOKEN_CLS";
    case TaskType::QuestionAns:
      return "QUESTION_ANS";
    case TaskType::Seq2SeqLm:
      return "SEQ_2_SEQ_LM";
    case TaskType::FeatureExtraction:
      return "FEATURE_EXTRACTION";
  }
  return "CAUSAL_LM";
}

std::optional<TaskType> parse_task_type(std::string_view s) {
  std::string up(s);
  std::transform(up.begin(), up.end(), up.begin(),
                 [](unsigned char c) { return c == '-' ? '_' : std::toupper(c); });
  for (TaskType t : {TaskType::CausalLm, TaskType::SeqCls, TaskType::TokenCls,
                     TaskType::QuestionAns, TaskType::Seq2SeqLm, TaskType::FeatureExtraction})
    if (up == task_type_name(t)) return t;
  return std::nullopt;
}

std::span<const Architecture> architectures() {
  return kArchitectures;
}

const Architecture* find_architecture(std::string_view model_type) {
  for (const auto& a : kArchitectures)
    if (a.model_type == model_type) return &a;
  return nullptr;
}

std::string ModuleNaming::peft_module(std::string_view m) const {
  // The task model PEFT wraps holds the base model under `prefix`; FEATURE_EXTRACTION wraps the
  // base model itself.
  const std::string_view attr =
      task == TaskType::FeatureExtraction ? std::string_view() : std::string_view(prefix);
  if (!stored_prefix.empty()) {
    if (!has_prefix(m, stored_prefix)) return std::string(m);  // a head of a task checkpoint
    return joined(attr, m.substr(stored_prefix.size() + 1));
  }
  if (is_head(m)) return std::string(m);
  return joined(attr, m);
}

std::vector<std::string> ModuleNaming::checkpoint_candidates(std::string_view p) const {
  std::vector<std::string> out{std::string(p)};
  auto add = [&out](std::string s) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(std::move(s));
  };
  std::vector<std::string_view> known{prefix};
  if (arch) {
    known.push_back(arch->prefix);
    known.push_back(arch->qa_prefix);
  }
  bool stripped = false;
  for (std::string_view q : known)
    if (has_prefix(p, q)) {
      const std::string_view rest = p.substr(q.size() + 1);
      if (!stored_prefix.empty()) add(joined(stored_prefix, rest));
      add(std::string(rest));
      stripped = true;
    }
  if (!stripped) {
    if (!stored_prefix.empty()) add(joined(stored_prefix, p));
    if (!prefix.empty()) add(joined(prefix, p));
  }
  return out;
}

bool is_conv1d_module(const Architecture& arch, std::string_view module) {
  // GPT-2 is Conv1D in attention and MLP alike: the leaf name decides.
  const std::string_view leaf = leaf_of(module);
  return std::find(arch.conv1d.begin(), arch.conv1d.end(), leaf) != arch.conv1d.end();
}

std::optional<bool> ModuleNaming::is_conv1d(std::string_view module) const {
  if (!arch) return std::nullopt;
  return is_conv1d_module(*arch, module);
}

bool is_task_head(const Architecture& arch, std::string_view module) {
  for (std::string_view h : arch.heads)
    if (module == h || has_prefix(module, h)) return true;
  return false;
}

bool ModuleNaming::is_head(std::string_view module) const {
  return arch && is_task_head(*arch, module);
}

ModuleNaming module_naming(const std::vector<std::string>& tensor_names,
                           const std::optional<nlohmann::json>& config, TaskType task,
                           const std::optional<std::string>& module_prefix) {
  ModuleNaming n;
  n.task = task;
  if (config && config->is_object() && config->contains("model_type") &&
      (*config)["model_type"].is_string())
    n.model_type = (*config)["model_type"].get<std::string>();
  n.arch = find_architecture(n.model_type);
  if (module_prefix)
    n.prefix = *module_prefix;
  else if (n.arch)
    n.prefix =
        std::string(task == TaskType::QuestionAns && !n.arch->qa_prefix.empty() ? n.arch->qa_prefix
                                                                                : n.arch->prefix);
  std::vector<std::string_view> stored{n.prefix};
  if (n.arch) {
    stored.push_back(n.arch->prefix);
    stored.push_back(n.arch->qa_prefix);
  }
  for (std::string_view q : stored) {
    if (q.empty()) continue;
    if (std::any_of(tensor_names.begin(), tensor_names.end(),
                    [q](const std::string& t) { return has_prefix(t, q); })) {
      n.stored_prefix = std::string(q);
      break;
    }
  }
  n.unknown = !n.arch && !module_prefix;
  const std::string family =
      n.model_type.empty() ? "no config.json model_type" : "model_type '" + n.model_type + "'";
  if (n.unknown)
    n.assumption = family +
                   " is not in ckptkit's table: module names used as stored, no base-model "
                   "prefix assumed (say it with --module-prefix)";
  else if (n.prefix.empty())
    n.assumption = family + ": --module-prefix '' (the task model is the base model)";
  else
    n.assumption = family + ": base model under '" + n.prefix + "', checkpoint stored " +
                   (n.stored_prefix.empty() ? "without the prefix (base-model layout)"
                                            : "with prefix '" + n.stored_prefix + "'") +
                   ", adapter names for " + std::string(task_type_name(task)) +
                   (task == TaskType::FeatureExtraction ? " (no prefix)" : "");
  return n;
}

}  // namespace ckpt
