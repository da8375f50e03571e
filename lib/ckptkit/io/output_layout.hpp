// The layout of a ckptkit output, in one place: every command writes its adapter and its
// checkpoint into named parts of the output root, with report.json beside them (never inside a
// model folder a user would upload): adapter/ and residual/ (svd-init, mpo-init), adapter/ and
// quantized/ (lq-decompose), quantized/ (quantize), model/ (convert, merge, quantize --dequantize),
// adapter/ (merge --to-lora). Every command that reads a checkpoint or an adapter accepts such
// an output root as it is and picks the part it needs, so outputs chain without a path suffix.
#pragma once

#include <filesystem>

namespace ckpt {

inline constexpr const char* kAdapterPart = "adapter";
inline constexpr const char* kResidualPart = "residual";
inline constexpr const char* kQuantizedPart = "quantized";
inline constexpr const char* kModelPart = "model";

/// The checkpoint inside an output root `dir` that holds no weights of its own: its residual/,
/// quantized/ or model/ folder. `dir` itself otherwise (and for anything that is not a directory).
/// Error(Usage) naming `dir` when it is an output root holding an adapter and no checkpoint.
std::filesystem::path checkpoint_part(const std::filesystem::path& dir);

/// The adapter inside an output root `dir` that has no adapter_config.json of its own: its
/// adapter/ folder when that holds one. `dir` itself otherwise.
std::filesystem::path adapter_part(const std::filesystem::path& dir);

}  // namespace ckpt
