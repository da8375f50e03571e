#include "ckptkit/formats/gguf_names.hpp"

#include <array>
#include <charconv>
#include <utility>

namespace ckpt {
namespace {

struct Family {
  const char* hf_class;
  const char* name;
  bool permute_qk;
  bool drops_lm_head;
};

// convert_hf_to_gguf.py's registrations for these classes (conversion/llama.py: LlamaModel with
// undo_permute; qwen.py: Qwen2Model, Qwen3Model; gemma.py: GemmaModel, Gemma2Model, which skip
// lm_head). Gemma 3 is left out: its converter drops embedding rows past the real vocabulary.
constexpr std::array<Family, 7> kFamilies = {{
    {"LlamaForCausalLM", "llama", true, false},
    {"MistralForCausalLM", "llama", true, false},
    {"MixtralForCausalLM", "llama", true, false},
    {"Qwen2ForCausalLM", "qwen2", false, false},
    {"Qwen3ForCausalLM", "qwen3", false, false},
    {"GemmaForCausalLM", "gemma", false, true},
    {"Gemma2ForCausalLM", "gemma2", false, true},
}};

// gguf-py tensor_mapping.py: the per-layer modules of these families.
constexpr std::array<std::pair<const char*, const char*>, 7> kLayerModules = {{
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
}};

std::int64_t config_int(const nlohmann::json& c, const char* key) {
  const auto it = c.find(key);
  return it != c.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

}  // namespace

std::string supported_gguf_architectures() {
  std::string s;
  for (const auto& f : kFamilies)
    s += (s.empty() ? "" : ", ") + std::string(f.hf_class) + " (" + f.name + ")";
  return s;
}

std::optional<GgufArchitecture> gguf_architecture(const nlohmann::json& config) {
  if (!config.is_object()) return std::nullopt;
  const auto arch = config.find("architectures");
  if (arch == config.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string())
    return std::nullopt;
  const std::string hf_class = (*arch)[0].get<std::string>();
  for (const auto& f : kFamilies) {
    if (hf_class != f.hf_class) continue;
    GgufArchitecture a{hf_class, f.name, f.permute_qk, f.drops_lm_head, 0, 0};
    a.n_head = config_int(config, "num_attention_heads");
    a.n_head_kv = config_int(config, "num_key_value_heads");
    if (a.n_head_kv == 0) a.n_head_kv = a.n_head;  // transformers' default: no grouping
    // Head counts a real config can have (a crafted one must not overflow 2 · heads).
    constexpr std::int64_t kMaxHeads = std::int64_t{1} << 20;
    if (a.n_head <= 0 || a.n_head > kMaxHeads || a.n_head_kv <= 0 || a.n_head_kv > a.n_head)
      return std::nullopt;
    return a;
  }
  return std::nullopt;
}

std::optional<std::string> gguf_tensor_name(const std::string& w) {
  if (w == "model.embed_tokens.weight") return "token_embd.weight";
  if (w == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (!w.starts_with(prefix) || !w.ends_with(".weight")) return std::nullopt;
  const std::size_t dot = w.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return std::nullopt;
  std::int64_t layer = -1;
  const char* first = w.data() + prefix.size();
  const auto [end, ec] = std::from_chars(first, w.data() + dot, layer);
  if (ec != std::errc() || end != w.data() + dot || layer < 0) return std::nullopt;
  const std::string module = w.substr(dot + 1, w.size() - dot - 1 - 7);  // without ".weight"
  for (const auto& [hf, gguf] : kLayerModules)
    if (module == hf) return "blk." + std::to_string(layer) + "." + gguf + ".weight";
  return std::nullopt;
}

std::int64_t rope_permute_heads(const GgufArchitecture& arch, const std::string& w) {
  if (!arch.permute_qk) return 0;
  if (w.ends_with("self_attn.q_proj.weight")) return arch.n_head;
  // LlamaModel.permute(k, n_head, n_head_kv) uses n_head_kv when the two differ.
  if (w.ends_with("self_attn.k_proj.weight")) return arch.n_head_kv;
  return 0;
}

std::vector<std::int64_t> rope_row_order(std::int64_t rows, std::int64_t heads) {
  const std::int64_t half = rows / heads / 2;
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < half; ++j)
      for (std::int64_t i = 0; i < 2; ++i)
        order[static_cast<std::size_t>(h * 2 * half + j * 2 + i)] = h * 2 * half + i * half + j;
  return order;
}

}  // namespace ckpt
