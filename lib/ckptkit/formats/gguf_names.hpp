// How llama.cpp's converter names and transforms the weights of the llama-like families, so that
// an adapter exported to GGUF lands on the tensors llama.cpp built from the base: the
// architecture names its converter registers (convert_hf_to_gguf.py: conversion/llama.py
// LlamaModel for LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM; qwen.py; gemma.py),
// the HF → GGUF tensor names (gguf-py tensor_mapping.py), and LlamaModel.permute, the q/k row
// order from HF's rotate_half layout to the interleaved one (undo_permute). docs/export-gguf.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckpt {

struct GgufArchitecture {
  std::string hf_class;     ///< config.json architectures[0], e.g. "LlamaForCausalLM"
  std::string name;         ///< general.architecture: "llama", "qwen2", "qwen3", "gemma", "gemma2"
  bool permute_qk = false;  ///< LlamaModel.undo_permute: q/k rows reordered for RoPE
  bool drops_lm_head = false;  ///< gemma: the converter skips lm_head (tied to token_embd)
  std::int64_t n_head = 0, n_head_kv = 0;  ///< num_attention_heads, num_key_value_heads
};

/// The families ckptkit exports, as "LlamaForCausalLM (llama), ..." for messages and docs.
std::string supported_gguf_architectures();

/// The architecture of a base from its config.json (architectures[0]); nullopt when llama.cpp's
/// converter does not map it the llama way or the head counts are missing.
std::optional<GgufArchitecture> gguf_architecture(const nlohmann::json& config);

/// The GGUF tensor of an HF weight ("model.layers.3.self_attn.q_proj.weight" →
/// "blk.3.attn_q.weight", "model.embed_tokens.weight" → "token_embd.weight", "lm_head.weight" →
/// "output.weight"); nullopt for a weight the table does not map.
std::optional<std::string> gguf_tensor_name(const std::string& hf_weight);

/// The head count LlamaModel.permute reorders `hf_weight`'s rows with (q_proj: n_head, k_proj:
/// n_head_kv), or 0 when its rows stay in place.
std::int64_t rope_permute_heads(const GgufArchitecture& arch, const std::string& hf_weight);

/// LlamaModel.permute as a row order for a [rows, ...] tensor and `heads` heads: row r of the
/// result is row order[r] of the input (reshape (heads, 2, rows / heads / 2), swap the last two).
std::vector<std::int64_t> rope_row_order(std::int64_t rows, std::int64_t heads);

}  // namespace ckpt
