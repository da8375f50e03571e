// Any adapter ckptkit reads, behind one interface for merge and analysis: PEFT LoRA (any tool's,
// including svd-init's PiSSA / MiLoRA / extraction and lq-decompose's L1·L2), ckptkit's SORSA
// (docs/formats-svd.md) and MPO (docs/mpo-init.md) formats. Each module's delta is given in the
// storage layout of the base tensor it applies to, either factored (scale·L·R, rank k) or, for
// MPO, dense on demand.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/architecture.hpp"

namespace ckpt {

class Checkpoint;

enum class AdapterFormat { Lora, Sorsa, Mpo };

/// "lora", "sorsa", "mpo".
std::string adapter_format_name(AdapterFormat f);

/// One module's delta in base storage layout [rows, cols]:
///   factored (rank > 0):  ΔW = scale · L · R,  L [rows, rank], R [rank, cols], row-major f32
///   dense (rank == 0):    see any_adapter_dense (MPO)
/// For LoRA [out, in] storage L = B, R = A; for Conv1D / embedding storage [in, out] L = Aᵀ,
/// R = Bᵀ. SORSA folds diag(S) into L (one f32 rounding).
struct AdapterDelta {
  std::string module;       ///< e.g. "model.decoder.layers.0.self_attn.q_proj"
  std::string base_tensor;  ///< "<module>.weight"
  std::int64_t rows = 0, cols = 0;
  double scale = 1;
  int rank = 0;
  std::vector<float> L, R;
  bool transposed = false;  ///< stored [in, out]: output features are the columns
  bool embedding = false;   ///< a LoRA embedding module (never re-oriented)
  /// DoRA: lora_magnitude_vector, one per output feature; the merged weight is
  /// magnitude / ‖W + ΔW‖ (per output feature) · (W + ΔW). Empty for every other adapter.
  std::vector<float> magnitude;
};

struct AnyAdapter {
  AdapterFormat format = AdapterFormat::Lora;
  std::filesystem::path dir;      ///< the adapter directory
  std::filesystem::path weights;  ///< its safetensors file (for messages)
  std::filesystem::path config;   ///< its adapter_config.json (for messages)
  std::string base_model_name_or_path;
  std::vector<AdapterDelta> modules;  ///< in file order
  MpoAdapter mpo;                     ///< MPO only: the cores (modules[i] ↔ mpo.modules[i])
  /// Full tensors saved with a LoRA adapter (modules_to_save heads, biases), named without
  /// "base_model.model."; resolve_any_adapter renames them to the base's names when present.
  std::vector<OwnedTensor> saved;
  std::vector<bool> saved_is_new;  ///< per saved tensor: absent from the base (a new head)
  std::vector<std::string> notes;  ///< PEFT's reading where it differs from the file's face value
};

/// Reads `dir` in whichever format its adapter_config.json declares. Besides each format's own
/// checks, every rank_pattern / alpha_pattern key must match at least one module of the adapter
/// (Error(Format) naming the config file and the key: a pattern written for another model).
AnyAdapter read_any_adapter(const std::filesystem::path& dir);

/// Resolves every module against `base` by PEFT's rules (adapters/base_match.hpp): base_tensor
/// becomes the base's own name (with or without the base-model prefix), LoRA deltas take PEFT's
/// Conv1D orientation (a note when the config said otherwise), then each delta's shape is checked
/// (Error(Format) "<adapter file>: tensor '<module>': ..."). `logical_shapes` supplies the float
/// shape of weights stored quantized; pass nullptr when none are.
void resolve_any_adapter(
    AnyAdapter& a, const Checkpoint& base, const ModuleNaming& naming,
    const std::vector<std::pair<std::string, std::vector<std::int64_t>>>* logical_shapes = nullptr);

/// The dense delta of module `i` (scale included), row-major in base storage layout.
std::vector<float> any_adapter_dense(const AnyAdapter& a, std::size_t i);

}  // namespace ckpt
