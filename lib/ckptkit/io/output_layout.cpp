#include "ckptkit/io/output_layout.hpp"

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"

namespace ckpt {
namespace fs = std::filesystem;

namespace {

bool has_weights(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_checkpoint_file_name(it->path().filename().string())) return true;
  }
  return false;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

}  // namespace

fs::path checkpoint_part(const fs::path& dir) {
  if (!is_dir(dir) || has_weights(dir)) return dir;
  for (const char* part : {kResidualPart, kQuantizedPart, kModelPart})
    if (is_dir(dir / part) && has_weights(dir / part)) return dir / part;
  if (is_dir(dir / kAdapterPart))
    fail(ErrorKind::Usage, dir.string() + ": holds an adapter (" + kAdapterPart +
                               "/) and no checkpoint; give the base model here (the adapter goes "
                               "where the command takes one)");
  return dir;
}

fs::path adapter_part(const fs::path& dir) {
  std::error_code ec;
  if (!is_dir(dir) || fs::exists(dir / "adapter_config.json", ec)) return dir;
  if (fs::exists(dir / kAdapterPart / "adapter_config.json", ec)) return dir / kAdapterPart;
  return dir;
}

}  // namespace ckpt
