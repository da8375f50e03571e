// Flags shared by the per-layer subcommands, bound into ckpt::CommonOptions.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt::cli {

/// Raw flag values before they are turned into library options.
struct CommonFlags {
  std::string output;
  bool force = false;
  std::vector<std::string> target, exclude;
  bool fan_in_fan_out = false, no_fan_in_fan_out = false;
  int threads = 0;
  std::string memory_budget = "0";
  std::uint64_t seed = 0;
  std::string max_shard_size = "5GB";
  bool zstd = false;
  std::string report;
  bool quiet = false;
  bool json = false;
  std::string shard;  // "K/N" or empty
};

/// Adds -o, --force, --target, --exclude, --threads, --memory-budget, --seed, --max-shard-size,
/// --zstd, --report, --quiet, --json to `cmd`; with targets also --shard K/N (per-layer
/// subcommands: docs/distributed.md).
void add_common_flags(CLI::App* cmd, CommonFlags& f, bool with_targets = true);
/// Validates and converts (Error(Usage) on a bad size).
CommonOptions to_common(const CommonFlags& f, const std::vector<std::string>& argv);

/// Prints the report JSON to stdout when --json, else `summary` unless --quiet.
void print_result(const CommonFlags& f, const Json& report, const std::string& summary);

/// The float dtype a flag names ("f32", "bf16", ...); Error(Usage) "<flag>: unknown float type
/// '<value>'" otherwise.
DType parse_float_flag(const std::string& flag, const std::string& value);

/// The command line as given, for reports.
std::vector<std::string>& argv_store();

}  // namespace ckpt::cli
