// --shard K/N: one of N machines computes a deterministic 1/N of the target tensors and writes a
// partial output with a part manifest (ckptkit-part.json); `ckptkit stitch` assembles the N parts
// into the output a single run writes (docs/distributed.md).
//
// Assignment: targets sorted by bytes (largest first, ties by name) go one by one onto the shard
// with the fewest bytes so far (ties: the lowest index). It depends only on names and sizes, never
// on threads or the machine. Passthrough (non-target) tensors and copied files go to shard 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

/// Name of the part manifest in a partial output's root directory.
inline constexpr const char* kPartManifest = "ckptkit-part.json";
/// Version of the part manifest format.
inline constexpr int kPartManifestVersion = 1;

/// K/N, 0-based: 0 <= index < count.
struct ShardSpec {
  int index = 0;
  int count = 1;
};

/// Parses "K/N" (Error(Usage) "--shard: ..." otherwise).
ShardSpec parse_shard_spec(const std::string& text);

/// The shard (0..count-1) of each target: largest first (ties by name) onto the lightest shard
/// (ties by lowest index). `bytes` and `names` are parallel; names must be unique.
std::vector<int> assign_shards(const std::vector<std::uint64_t>& bytes,
                               const std::vector<std::string>& names, int count);

/// Fingerprint of the settings that shape the output: sha256 of the command line without
/// argv[0] and the flags that do not change the output bytes (--shard, -o/--output, --force,
/// --threads, --memory-budget, --quiet, --json, --report).
std::string settings_fingerprint(const std::vector<std::string>& argv);

/// The state of a --shard run, shared through ExecOptions::shard: stream_checkpoint asks it which
/// tensors to compute and records each streamed checkpoint in the part manifest.
class ShardRun {
 public:
  /// `output` is the final output directory as given (-o); `argv` the command line.
  ShardRun(ShardSpec spec, std::filesystem::path output, std::vector<std::string> argv);

  const ShardSpec& spec() const { return spec_; }

  /// For a command that does not stream a checkpoint: which of `targets` (parallel `names` and
  /// input `bytes`, checkpoint order) this shard computes; records the manifest in `out_root`
  /// (the temporary output root).
  std::vector<bool> select(const std::filesystem::path& out_root, const Checkpoint& input,
                           const std::vector<std::string>& names,
                           const std::vector<std::uint64_t>& bytes);

  /// One streamed checkpoint (called by stream_checkpoint once its part is written): the full
  /// single-run plan with each output's shard, the writer options and the files this part wrote.
  void record_checkpoint(const std::filesystem::path& out_dir, const Checkpoint& input,
                         const std::vector<TensorSpec>& plan, const std::vector<int>& plan_shard,
                         const WriterOptions& options, const std::vector<std::string>& targets,
                         const std::vector<std::uint64_t>& target_bytes,
                         const std::vector<int>& target_shard,
                         const std::vector<std::string>& part_files);

 private:
  std::filesystem::path root_of(const std::filesystem::path& dir) const;
  void set_input(const Checkpoint& input, const std::vector<std::string>& targets,
                 const std::vector<std::uint64_t>& bytes, const std::vector<int>& shard);
  void write(const std::filesystem::path& root) const;

  ShardSpec spec_;
  std::filesystem::path output_;
  Json manifest_;
};

/// For a command that runs its own loop instead of stream_checkpoint: keeps this shard's share
/// of `items` (all of them when `shard` is null) and records the part manifest in `out_root`.
/// `tensor(item)` is the item's `const CheckpointTensor*` in `input`.
template <class T, class F>
void keep_my_shard(const std::shared_ptr<ShardRun>& shard, const std::filesystem::path& out_root,
                   const Checkpoint& input, std::vector<T>& items, F tensor) {
  if (!shard) return;
  std::vector<std::string> names;
  std::vector<std::uint64_t> bytes;
  for (const auto& it : items) {
    names.push_back(tensor(it)->info.name);
    bytes.push_back(tensor(it)->info.nbytes());
  }
  const std::vector<bool> mine = shard->select(out_root, input, names, bytes);
  std::vector<T> kept;
  for (std::size_t i = 0; i < items.size(); ++i)
    if (mine[i]) kept.push_back(std::move(items[i]));
  items = std::move(kept);
}

}  // namespace ckpt
