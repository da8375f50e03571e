// `ckptkit convert`: copy, reshard, recompress or cast a checkpoint. Without --dtype every tensor
// is copied byte for byte, so it doubles as the I/O layer's round-trip check.
#pragma once

#include <optional>

#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct ConvertOptions {
  std::filesystem::path input;
  CommonOptions common;
  std::optional<DType> dtype;  // cast float tensors (round to nearest even)
};

/// Writes the converted checkpoint atomically; returns the report (also written as report.json
/// beside the weights only when --report names a file: a converted checkpoint stays clean).
Json run_convert(const ConvertOptions& options);

/// The one-line summary printed after a run (not under --quiet or --json).
std::string convert_summary(const Json& report, const std::string& output);

}  // namespace ckpt
