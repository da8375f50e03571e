// report.json of a stitched output from its parts' reports: rows of every part in the single run's
// order, totals folded by the command's CommandSpec, the rest by generic rules (equal in every
// part; timings; objects differing only in timings). docs/distributed.md says what comes out.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

/// Merges the parts' reports (`where[k]` names report k in messages). `position(row)` is a row's
/// place in the single run (checkpoint order); `files` the stitched checkpoint's files; `spec`
/// the command's spec or null (then only the generic rules apply). Error(Usage) when the parts
/// are of other commands, settings or inputs; Error(Unsupported) for a value that differs between
/// parts and has no rule.
Json merge_part_reports(const std::vector<Json>& reports, const std::vector<std::string>& where,
                        const std::function<std::size_t(const Json&)>& position,
                        const std::vector<std::string>& files, const CommandSpec* spec);

/// Removes "--shard K/N" (and "--shard=K/N") from a command line.
std::vector<std::string> argv_without_shard(const std::vector<std::string>& argv);

}  // namespace ckpt
