// `ckptkit inspect`: what a checkpoint holds, which tensors the default targets pick, and whether
// it is valid.
#pragma once

#include <filesystem>

#include "ckptkit/io/targets.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct InspectOptions {
  std::filesystem::path input;
  TargetOptions targets;
  bool scan_values = false;  // also read every float value and count NaN/Inf
};

/// The description as JSON (tensors, per-dtype totals, shards, architecture, targets, verdict).
/// Malformed input throws Error(Format) like every other reader.
Json run_inspect(const InspectOptions& options);

/// The human-readable table `ckptkit inspect` prints (the report of run_inspect).
std::string inspect_table(const Json& report);

}  // namespace ckpt
