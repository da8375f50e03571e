#include "ckptkit/engine/options.hpp"

#include "ckptkit/io/checkpoint.hpp"

namespace ckpt {

WriterOptions writer_options(const CommonOptions& common, Metadata metadata) {
  WriterOptions w;
  w.max_shard_size = common.max_shard_size;
  w.zstd = common.zstd;
  w.metadata = std::move(metadata);
  return w;
}

std::string adapter_base_model(const CommonOptions& common, const Checkpoint& input,
                               const std::filesystem::path& typed) {
  if (common.base_model_id) return *common.base_model_id;
  const auto& c = input.config();
  if (c && c->is_object() && c->contains("_name_or_path") && (*c)["_name_or_path"].is_string() &&
      !(*c)["_name_or_path"].get<std::string>().empty())
    return (*c)["_name_or_path"].get<std::string>();
  // A local path, absolute: PEFT resolves a relative one against wherever it is run from.
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(typed, ec);
  return (ec ? typed : abs.lexically_normal()).string();
}

}  // namespace ckpt
