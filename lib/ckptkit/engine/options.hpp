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
  std::optional<std::string> base_model_id;  // --base-model-id: base_model_name_or_path to write
  std::vector<std::string> argv;             // the command line, for the report
};

/// Writer options for a full checkpoint output carrying `metadata` over.
WriterOptions writer_options(const CommonOptions& common, Metadata metadata);

class Checkpoint;

/// base_model_name_or_path of an adapter made from `input`: --base-model-id when given, else
/// the input's config.json `_name_or_path`, else the input path as the user typed it (`typed`).
std::string adapter_base_model(const CommonOptions& common, const Checkpoint& input,
                               const std::filesystem::path& typed);

}  // namespace ckpt
