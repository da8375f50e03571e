#include "ckptkit/adapters/lora_write.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/writer.hpp"

namespace ckpt {
namespace {

std::string leaf(const std::string& module) {
  const auto dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

nlohmann::json patterns_json(const LoraConfig& c) {
  nlohmann::json rank = nlohmann::json::object(), alpha = nlohmann::json::object();
  for (const auto& [k, v] : c.rank_pattern)
    rank[k] = v;
  for (const auto& [k, v] : c.alpha_pattern)
    alpha[k] = peft_json_number(v);
  return {{"rank_pattern", rank}, {"alpha_pattern", alpha}};
}

}  // namespace

nlohmann::json peft_json_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15)
    return static_cast<std::int64_t>(v);
  return v;
}

nlohmann::json lora_config_json(const LoraConfig& c) {
  nlohmann::json j = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", c.base_model_name_or_path},
      {"r", c.r},
      {"lora_alpha", peft_json_number(c.lora_alpha)},
      {"target_modules", c.target_modules},
      {"fan_in_fan_out", c.fan_in_fan_out},
      {"use_rslora", c.use_rslora},
      // true, never "pissa": PEFT re-runs a string init on load and would subtract the
      // principal components a second time (peft-anchors §1.2.10).
      {"init_lora_weights", true},
      {"lora_dropout", 0.0},
      {"bias", "none"},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"inference_mode", false},
      {"revision", nullptr},
  };
  const auto pats = patterns_json(c);
  j["rank_pattern"] = pats["rank_pattern"];
  j["alpha_pattern"] = pats["alpha_pattern"];
  if (c.extra.is_object())
    for (const auto& [k, v] : c.extra.items())
      j[k] = v;
  return j;  // nlohmann::json keeps keys sorted, as PEFT's json.dumps(sort_keys=True)
}

std::pair<std::string, std::string> lora_keys(const LoraModule& m) {
  const std::string p = std::string(kPeftPrefix) + m.module;
  if (m.embedding) return {p + ".lora_embedding_A", p + ".lora_embedding_B"};
  return {p + ".lora_A.weight", p + ".lora_B.weight"};
}

void write_lora_adapter(const std::filesystem::path& dir, const LoraConfig& config,
                        const std::vector<LoraModule>& modules, DType dtype) {
  std::vector<OwnedTensor> tensors;
  tensors.reserve(2 * modules.size());
  for (const auto& m : modules) {
    const auto [ka, kb] = lora_keys(m);
    if (m.embedding) {
      // PEFT Embedding: lora_embedding_A [r, num_embeddings], lora_embedding_B [dim, r].
      tensors.push_back(make_tensor(ka, dtype, {m.rank, m.in}, m.A));
      tensors.push_back(make_tensor(kb, dtype, {m.out, m.rank}, m.B));
    } else {
      tensors.push_back(make_tensor(ka, dtype, {m.rank, m.in}, m.A));
      tensors.push_back(make_tensor(kb, dtype, {m.out, m.rank}, m.B));
    }
  }
  write_safetensors_file(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  write_text_file(dir / "adapter_config.json", lora_config_json(config).dump(2) + "\n");
}

void write_sorsa_adapter(const std::filesystem::path& dir, const LoraConfig& config,
                         const std::vector<SorsaModule>& modules, DType dtype) {
  std::vector<OwnedTensor> tensors;
  tensors.reserve(3 * modules.size());
  for (const auto& m : modules) {
    const std::string p = std::string(kPeftPrefix) + m.module;
    tensors.push_back(make_tensor(p + ".sorsa_A", dtype, {m.rank, m.in}, m.A));
    tensors.push_back(make_tensor(p + ".sorsa_S", dtype, {m.rank}, m.S));
    tensors.push_back(make_tensor(p + ".sorsa_B", dtype, {m.out, m.rank}, m.B));
  }
  write_safetensors_file(dir / "adapter_model.safetensors", tensors,
                         {{"format", "pt"},
                          {"ckptkit_format", "sorsa"},
                          {"format_version", std::to_string(kSorsaFormatVersion)}});
  nlohmann::json j = {
      {"ckptkit_format", "sorsa"},
      {"format_version", kSorsaFormatVersion},
      {"base_model_name_or_path", config.base_model_name_or_path},
      {"r", config.r},
      {"alpha", peft_json_number(config.lora_alpha)},
      {"use_rslora", config.use_rslora},
      {"target_modules", config.target_modules},
      {"fan_in_fan_out", config.fan_in_fan_out},
      {"delta",
       "scaling * sorsa_B @ diag(sorsa_S) @ sorsa_A, scaling = alpha / r (alpha / sqrt(r) with "
       "use_rslora)"},
  };
  const auto pats = patterns_json(config);
  j["rank_pattern"] = pats["rank_pattern"];
  j["alpha_pattern"] = pats["alpha_pattern"];
  write_text_file(dir / "adapter_config.json", j.dump(2) + "\n");
}

std::vector<std::string> target_modules_for(const std::vector<std::string>& adapted,
                                            const std::vector<std::string>& all_candidates) {
  const std::set<std::string> chosen(adapted.begin(), adapted.end());
  std::set<std::string> leaves;
  for (const auto& m : adapted)
    leaves.insert(leaf(m));
  for (const auto& c : all_candidates)
    if (leaves.count(leaf(c)) && !chosen.count(c))
      return std::vector<std::string>(chosen.begin(), chosen.end());
  return std::vector<std::string>(leaves.begin(), leaves.end());
}

}  // namespace ckpt
