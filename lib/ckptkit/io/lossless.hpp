// Lossless archives (ZipNN-style byte planes + zstd). Each tensor is stored as one U8 blob whose
// bytes are the tensor split into byte planes after a bit reorder that puts each float's exponent
// in a byte of its own (bf16: exponent byte | sign+7 mantissa bits; f32: exponent | sign+7 high
// mantissa bits | mantissa byte | mantissa byte; other types: plain byte planes), cut into chunks
// of 256 Ki elements, each plane of each chunk an independent zstd frame (or stored raw when zstd
// does not shrink it). Independent frames make the output byte-identical for any thread count.
// A shard is marked by the `__metadata__` key kLosslessMarker holding JSON: format version, each
// tensor's original dtype and shape, and the original __metadata__. Layout: docs/formats-quant.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/safetensors.hpp"

namespace ckpt {

inline constexpr const char* kLosslessMarker = "ckptkit.lossless";
/// In the archive's file names (model.ckptkit-lossless.safetensors, model-00001-of-00002.ckptkit-
/// lossless.safetensors, model.ckptkit-lossless.safetensors.index.json): transformers looks for
/// its own names and so refuses the folder instead of loading byte blobs; ckptkit reads it as is.
inline constexpr const char* kLosslessFileTag = "ckptkit-lossless";
inline constexpr int kLosslessVersion = 1;

/// Runs body(i) for i in [0, n), possibly in parallel (the pipeline passes its engine; io does not
/// depend on TBB). The default is a serial loop.
using ParallelFor =
    std::function<void(std::size_t n, const std::function<void(std::size_t)>& body)>;
void serial_for(std::size_t n, const std::function<void(std::size_t)>& body);

struct LosslessOptions {
  int level = 1;                           // zstd level of every frame
  bool entropy_tuned = true;               // float planes: min match 7, hash log 6 (see .cpp)
  std::uint32_t chunk_elems = 256 * 1024;  // elements per chunk (ZipNN uses 256 KB chunks)
};

/// Encodes a tensor's raw bytes into a blob.
std::vector<std::byte> lossless_encode(DType dtype, std::span<const std::byte> bytes,
                                       const LosslessOptions& options,
                                       const ParallelFor& pf = serial_for);
/// Decodes a blob back into exactly the original bytes; Error(Format) naming `where` when corrupt.
std::vector<std::byte> lossless_decode(std::span<const std::byte> blob, DType dtype,
                                       std::uint64_t nbytes, const std::string& where,
                                       const ParallelFor& pf = serial_for);

/// True when a shard header carries the lossless marker.
bool is_lossless_archive(const SafetensorsHeader& header);
/// Decodes a whole archive shard into the bytes of a plain safetensors file (original dtypes,
/// shapes and __metadata__), so readers can treat it like any other file.
std::vector<std::byte> decode_lossless_file(std::span<const std::byte> file,
                                            const SafetensorsHeader& header,
                                            const std::string& file_name);

/// Writes an archive directory: blobs arrive in order, are spooled to part files in `dir` (so
/// memory stays one blob), and finish() writes model.safetensors (or HF-style shards + index).
class LosslessArchiveWriter {
 public:
  LosslessArchiveWriter(std::filesystem::path dir, Metadata original_metadata, bool had_metadata,
                        std::uint64_t max_shard_size);
  ~LosslessArchiveWriter();
  LosslessArchiveWriter(const LosslessArchiveWriter&) = delete;
  LosslessArchiveWriter& operator=(const LosslessArchiveWriter&) = delete;

  void add(const std::string& name, DType dtype, const Shape& shape,
           std::span<const std::byte> blob);
  void finish();
  const std::vector<std::string>& files() const { return files_; }
  std::uint64_t bytes_written() const { return bytes_written_; }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::uint64_t size;
  };
  struct Part {
    std::filesystem::path path;
    std::vector<Entry> entries;
    std::uint64_t bytes = 0;
  };
  std::filesystem::path dir_;
  Metadata original_;
  bool had_metadata_;
  std::uint64_t max_shard_size_;
  std::vector<Part> parts_;
  std::FILE* out_ = nullptr;
  std::vector<std::string> files_;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace ckpt
