// A checkpoint as a user names it: a directory (model.safetensors, or an index + shards, plus
// config.json and other files), or a single .safetensors file; any file may be `.zst`-compressed.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace ckpt {

struct Shard {
  std::filesystem::path path;
  std::shared_ptr<const FileBytes> file;
  SafetensorsHeader header;
};

/// One tensor of a checkpoint and the shard that holds it.
struct CheckpointTensor {
  TensorInfo info;
  std::size_t shard = 0;
};

class Checkpoint {
 public:
  /// Opens and validates every shard header. Throws Error(Format) for malformed files,
  /// Error(Io) for unreadable ones, Error(Usage) for a path that holds no checkpoint.
  static Checkpoint open(const std::filesystem::path& path);

  /// Tensors in storage order: shard by shard (index order), by data offset within a shard.
  const std::vector<CheckpointTensor>& tensors() const { return tensors_; }
  /// nullptr when absent (an expected miss, not an error).
  const CheckpointTensor* find(std::string_view name) const;
  /// Zero-copy view of a tensor's bytes; valid while this Checkpoint lives.
  TensorView view(const CheckpointTensor& t) const;
  /// Tells the OS the tensor's pages can be dropped (bounded RSS when streaming).
  void release(const CheckpointTensor& t) const;

  const std::vector<Shard>& shards() const { return shards_; }
  /// The file holding a tensor, for error messages.
  std::string file_of(const CheckpointTensor& t) const { return shards_[t.shard].path.string(); }
  /// Input as given.
  const std::filesystem::path& path() const { return path_; }
  /// The directory the checkpoint lives in (the path itself for a directory input).
  const std::filesystem::path& directory() const { return dir_; }
  /// True when the input had an index.json.
  bool sharded() const { return sharded_; }
  /// config.json when there is one (beside a single-file input too).
  const std::optional<nlohmann::json>& config() const { return config_; }
  /// Non-weight files of a directory input (config.json, tokenizer files, ...), to copy over.
  const std::vector<std::filesystem::path>& extra_files() const { return extra_files_; }
  /// __metadata__ of the first shard.
  const Metadata& metadata() const;
  std::uint64_t total_bytes() const;

 private:
  std::filesystem::path path_, dir_;
  bool sharded_ = false;
  std::vector<Shard> shards_;
  std::vector<CheckpointTensor> tensors_;
  std::unordered_map<std::string, std::size_t> by_name_;
  std::optional<nlohmann::json> config_;
  std::vector<std::filesystem::path> extra_files_;
};

/// Whether Checkpoint::open reads a file of this name as weights or an index (safetensors or
/// PyTorch's, `.zst` or not): what makes a folder a checkpoint.
bool is_checkpoint_file_name(const std::string& file);

/// Parses a Hugging Face `*.safetensors.index.json`: the weight_map as (tensor, shard file) pairs
/// in file order. Throws Error(Format) naming `file_name`.
std::vector<std::pair<std::string, std::string>> parse_index_json(std::string_view text,
                                                                  const std::string& file_name);

}  // namespace ckpt
