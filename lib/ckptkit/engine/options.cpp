#include "ckptkit/engine/options.hpp"

namespace ckpt {

WriterOptions writer_options(const CommonOptions& common, Metadata metadata) {
  WriterOptions w;
  w.max_shard_size = common.max_shard_size;
  w.zstd = common.zstd;
  w.metadata = std::move(metadata);
  return w;
}

}  // namespace ckpt
