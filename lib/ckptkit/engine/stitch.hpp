// `ckptkit stitch`: assembles the partial outputs of N `--shard K/N` runs into the output a single
// run writes. Checkpoints are re-streamed in the single-run plan (the same files, shards and
// index, byte for byte); small tensor files, adapter configs and report.json are merged in the
// single-run order. What is byte-identical and what is not: docs/distributed.md.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct StitchOptions {
  std::vector<std::filesystem::path> parts;  // the N part directories, any order
  std::filesystem::path output;
  bool force = false;
  bool progress = true;
  std::optional<std::filesystem::path> report_path;  // extra copy of the stitched report.json
  std::vector<CommandSpec> commands;  // how each command's totals fold (apps: command_specs())
};

/// Checks that the parts are the N shards of one job (Error(Usage) naming the part otherwise:
/// missing, duplicate, other inputs or settings), writes the stitched output atomically and
/// returns its report.json. Nothing is left on disk when it fails.
Json run_stitch(const StitchOptions& options);

/// A part's ckptkit-part.json text, parsed (depth- and size-bounded) and checked: the fields stitch
/// reads have their types, the version is this build's, and every name it joins to a directory is
/// a plain relative name (io/paths.hpp). Error(Format) or Error(Unsupported) naming `file`.
Json parse_part_manifest(std::string_view text, const std::string& file);

/// The one-line summary printed after a stitch: parts, command, rows and files written.
std::string stitch_summary(const Json& report, std::size_t parts,
                           const std::filesystem::path& output);

}  // namespace ckpt
