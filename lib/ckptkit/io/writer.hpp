// Streaming safetensors writer. The caller declares the output tensors up front (a plan), so each
// shard's header is known before its data and tensors are written one at a time, in plan order,
// straight to disk: memory use is one tensor, whatever the model size. Sharding follows Hugging
// Face: shards fill in order up to max_shard_size (a larger tensor gets a shard of its own), named
// <base>-00001-of-0000N.safetensors with <base>.safetensors.index.json; one shard is written as
// <base>.safetensors without an index.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace ckpt {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t nbytes() const {
    return static_cast<std::uint64_t>(numel(shape)) * dtype_size(dtype);
  }
};

struct WriterOptions {
  std::uint64_t max_shard_size = 5'000'000'000ull;  // "5GB" as transformers counts it
  bool zstd = false;  // each file as a standard zstd frame, name + ".zst"
  int zstd_level = 3;
  std::string base_name = "model";
  Metadata metadata;  // written as __metadata__ of every shard
  bool write_metadata = true;
};

class ByteSink;

class ShardedWriter {
 public:
  /// Plans shards for `plan` and opens the first one in `dir`. Names must be unique.
  ShardedWriter(std::filesystem::path dir, std::vector<TensorSpec> plan, WriterOptions options);
  ~ShardedWriter();
  ShardedWriter(const ShardedWriter&) = delete;
  ShardedWriter& operator=(const ShardedWriter&) = delete;

  /// Writes the next tensor of the plan; `name` and the byte count must match it.
  void write(const std::string& name, std::span<const std::byte> bytes);
  /// Closes the last shard and writes the index. Every planned tensor must have been written.
  void finish();

  /// Files written (relative names), for reports.
  const std::vector<std::string>& files() const { return files_; }
  std::size_t shard_count() const { return shard_ranges_.size(); }

 private:
  void open_shard(std::size_t s);
  void close_shard();

  std::filesystem::path dir_;
  std::vector<TensorSpec> plan_;
  WriterOptions options_;
  std::vector<std::pair<std::size_t, std::size_t>> shard_ranges_;  // [first, last) plan indices
  std::vector<std::string> shard_names_;
  std::vector<std::string> files_;
  std::unique_ptr<ByteSink> sink_;
  std::size_t next_ = 0;
  std::size_t shard_ = 0;
  bool finished_ = false;
};

/// Writes a small checkpoint held in memory (adapters, vectors) as one safetensors file.
void write_safetensors_file(const std::filesystem::path& path,
                            const std::vector<OwnedTensor>& tensors, const Metadata& metadata,
                            bool zstd = false);

/// Assigns plan indices to shards as Hugging Face does; returns [first, last) ranges.
std::vector<std::pair<std::size_t, std::size_t>> plan_shards(const std::vector<TensorSpec>& plan,
                                                             std::uint64_t max_shard_size);

}  // namespace ckpt
