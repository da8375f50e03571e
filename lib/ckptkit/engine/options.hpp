// Options every per-layer subcommand shares, and the helpers that turn them into engine settings.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/engine/engine.hpp"
#include "ckptkit/io/targets.hpp"
#include "ckptkit/io/writer.hpp"

namespace ckpt {

struct CommonOptions {
  std::filesystem::path output;
  bool force = false;
  TargetOptions targets;
  ExecOptions exec;
  std::uint64_t seed = 0;
  std::uint64_t max_shard_size = 5'000'000'000ull;
  bool zstd = false;
  std::optional<std::filesystem::path> report_path;  // extra copy of report.json
  std::vector<std::string> argv;                     // the command line, for the report
};

/// Writer options for a full checkpoint output carrying `metadata` over.
WriterOptions writer_options(const CommonOptions& common, Metadata metadata);

}  // namespace ckpt
