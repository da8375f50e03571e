// What the engine knows of a command beyond its run: how its report totals fold from the report's
// rows, and which files it draws from the report after the fact. A single run and `ckptkit
// stitch` call the same fold on the same rows (in checkpoint order), so the stitched totals equal
// the single run's bit for bit, and stitch itself names no command and no totals key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ckptkit/report/report.hpp"

namespace ckpt {

struct CommandSpec {
  std::string name;  ///< the subcommand, as report.json's "command" says it
  /// The row-derived totals of `report` (its "tensors" rows and other row lists, in checkpoint
  /// order, and its settings; its "totals" are not read). `files`: the weight files of the
  /// output's first checkpoint. Pure: same arguments, same bytes. Totals it does not return
  /// (timings, whole-run facts) are combined by stitch's generic rules.
  std::function<Json(const Json& report, const std::vector<std::string>& files)> totals;
  /// Files of the output drawn from the finished report and the other output files (e.g. an
  /// HTML page plotted from a CSV), relative to the output root; stitch skips them in the
  /// parts and calls `derive` once everything else is written.
  std::vector<std::string> derived_files;
  std::function<void(const Json& report, const std::filesystem::path& out_root)> derive;
};

/// The spec named `command` in `specs`, or nullptr.
inline const CommandSpec* find_command_spec(const std::vector<CommandSpec>& specs,
                                            const std::string& command) {
  for (const auto& s : specs)
    if (s.name == command) return &s;
  return nullptr;
}

/// Σ row["sums"][key] over `rows` in their order: the raw additive quantities (squared errors,
/// flop counts) rows carry so that ratio totals can be folded exactly. 0 when no row has it.
inline double sum_of_row_sums(const Json& rows, const std::string& key) {
  double s = 0;
  for (const auto& r : rows)
    if (r.contains("sums") && r["sums"].contains(key)) s += r["sums"][key].get<double>();
  return s;
}

/// Σ row[key] as an unsigned integer over `rows`.
inline std::uint64_t sum_of_counts(const Json& rows, const std::string& key) {
  std::uint64_t s = 0;
  for (const auto& r : rows)
    if (r.contains(key)) s += r[key].get<std::uint64_t>();
  return s;
}

/// True when some row carries the raw sum `key`.
inline bool rows_have_sum(const Json& rows, const std::string& key) {
  for (const auto& r : rows)
    if (r.contains("sums") && r["sums"].contains(key)) return true;
  return false;
}

}  // namespace ckpt
