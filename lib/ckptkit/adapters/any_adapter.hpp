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
};

struct AnyAdapter {
  AdapterFormat format = AdapterFormat::Lora;
  std::filesystem::path dir;      ///< the adapter directory
  std::filesystem::path weights;  ///< its safetensors file (for messages)
  std::filesystem::path config;   ///< its adapter_config.json (for messages)
  std::string base_model_name_or_path;
  std::vector<AdapterDelta> modules;  ///< in file order
  MpoAdapter mpo;                     ///< MPO only: the cores (modules[i] ↔ mpo.modules[i])
};

/// Reads `dir` in whichever format its adapter_config.json declares. Besides each format's own
/// checks, every rank_pattern / alpha_pattern key must match at least one module of the adapter
/// (Error(Format) naming the config file and the key: a pattern written for another model).
AnyAdapter read_any_adapter(const std::filesystem::path& dir);

/// Checks every module's base tensor exists in `base` with the delta's shape (Error(Format)
/// "<adapter file>: tensor '<module>': ..."). `quantized_shape(name)` may supply the logical shape
/// of weights stored quantized (empty Shape: not quantized); pass nullptr when none are.
void check_any_adapter_against(
    const AnyAdapter& a, const Checkpoint& base,
    const std::vector<std::pair<std::string, std::vector<std::int64_t>>>* logical_shapes = nullptr);

/// The dense delta of module `i` (scale included), row-major in base storage layout.
std::vector<float> any_adapter_dense(const AnyAdapter& a, std::size_t i);

}  // namespace ckpt
