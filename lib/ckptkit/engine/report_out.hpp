#pragma once
/// The common ending of a subcommand that writes a checkpoint directory.

#include "ckptkit/engine/options.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

/// Writes report.json into the output, commits it, then writes the --report copy (if any, checked
/// when `out` was made) and returns the report's JSON.
inline Json commit_with_report(const Report& report, OutputDir& out, const CommonOptions& common) {
  const Json j = report.to_json();
  report.write(out.path() / "report.json");
  out.commit();
  out.write_report_copy(report.text());
  return j;
}

}  // namespace ckpt
