// The layout of a ckptkit output, in one place: the commands that write an adapter and a
// checkpoint put them in adapter/ and residual/ (svd-init, mpo-init) or quantized/ (lq-decompose),
// with report.json beside them. Every command that reads a checkpoint or an adapter accepts such
// an output root as it is and picks the part it needs, so outputs chain without a path suffix.
#pragma once

#include <filesystem>

namespace ckpt {

inline constexpr const char* kAdapterPart = "adapter";
inline constexpr const char* kResidualPart = "residual";
inline constexpr const char* kQuantizedPart = "quantized";

/// The checkpoint inside an output root `dir` that holds no weights of its own: its residual/ or
/// quantized/ folder. `dir` itself otherwise (and for anything that is not a directory).
/// Error(Usage) naming `dir` when it is an output root holding an adapter and no checkpoint.
std::filesystem::path checkpoint_part(const std::filesystem::path& dir);

/// The adapter inside an output root `dir` that has no adapter_config.json of its own: its
/// adapter/ folder when that holds one. `dir` itself otherwise.
std::filesystem::path adapter_part(const std::filesystem::path& dir);

}  // namespace ckpt
