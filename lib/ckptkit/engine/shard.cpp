#include "ckptkit/engine/shard.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/sha256.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/io/output_dir.hpp"

namespace ckpt {
namespace fs = std::filesystem;

ShardSpec parse_shard_spec(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    fail(ErrorKind::Usage, "--shard: '" + text + "' " + why);
  };
  const auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == text.size())
    bad("is not K/N (0-based shard K of N, e.g. 0/4)");
  const auto number = [&](const std::string& s) {
    if (s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
      bad("is not K/N with whole numbers (e.g. 0/4)");
    return std::stoi(s);
  };
  ShardSpec s{number(text.substr(0, slash)), number(text.substr(slash + 1))};
  if (s.count < 1) bad("needs N >= 1");
  if (s.index >= s.count)
    bad("needs 0 <= K < N (K is 0-based: shards 0/" + std::to_string(s.count) + " to " +
        std::to_string(s.count - 1) + "/" + std::to_string(s.count) + ")");
  return s;
}

std::vector<int> assign_shards(const std::vector<std::uint64_t>& bytes,
                               const std::vector<std::string>& names, int count) {
  CKPT_ASSERT(bytes.size() == names.size() && count >= 1);
  std::vector<std::size_t> order(bytes.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return bytes[a] != bytes[b] ? bytes[a] > bytes[b] : names[a] < names[b];
  });
  // (load, shard) ordered: the lightest shard first, ties by index.
  std::set<std::pair<std::uint64_t, int>> load;
  for (int k = 0; k < count; ++k)
    load.insert({0, k});
  std::vector<int> shard(bytes.size(), 0);
  for (std::size_t i : order) {
    auto lightest = *load.begin();
    load.erase(load.begin());
    shard[i] = lightest.second;
    load.insert({lightest.first + bytes[i], lightest.second});
  }
  return shard;
}

std::string settings_fingerprint(const std::vector<std::string>& argv) {
  // Flags that change how or where the job runs, not what it writes.
  static const std::set<std::string> with_value = {"-o",        "--output",        "--shard",
                                                   "--threads", "--memory-budget", "--report"};
  static const std::set<std::string> without_value = {"--force", "-q", "--quiet", "--json"};
  std::string canon;
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    const std::string key = a.substr(0, a.find('='));
    if (without_value.count(a)) continue;
    if (with_value.count(key)) {
      if (key == a) ++i;  // "--flag value"; "--flag=value" is one word
      continue;
    }
    if (a.size() > 2 && a.rfind("-o", 0) == 0 && a[2] != '-') continue;  // "-oDIR"
    canon += a;
    canon.push_back('\0');
  }
  return sha256_hex(std::as_bytes(std::span(canon.data(), canon.size())));
}

ShardRun::ShardRun(ShardSpec spec, fs::path output, std::vector<std::string> argv)
    : spec_(spec), output_(std::move(output)) {
  manifest_ = {{"format", "ckptkit-part"},
               {"version", kPartManifestVersion},
               {"shard", {{"index", spec_.index}, {"count", spec_.count}}},
               {"command", argv.size() > 1 ? argv[1] : std::string()},
               {"settings_sha256", settings_fingerprint(argv)},
               {"output", output_.string()},
               {"argv", argv},
               {"input", nullptr},
               {"targets", Json::array()},
               {"checkpoints", Json::array()}};
}

fs::path ShardRun::root_of(const fs::path& dir) const {
  // The output root is the temporary sibling of the final output (OutputDir): the ancestor of
  // `dir` that sits in the final output's parent directory.
  const fs::path parent = fs::absolute(output_).lexically_normal().parent_path();
  fs::path p = fs::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  for (fs::path q = p; q.has_parent_path() && q != q.parent_path(); q = q.parent_path())
    if (q.parent_path() == parent) return q;
  return p;
}

void ShardRun::set_input(const Checkpoint& input, const std::vector<std::string>& targets,
                         const std::vector<std::uint64_t>& bytes, const std::vector<int>& shard) {
  if (!manifest_["input"].is_null()) return;  // the first input defines the order
  Json tensors = Json::array();
  for (const auto& t : input.tensors())
    tensors.push_back({{"name", t.info.name}, {"ndim", t.info.shape.size()}});
  Json files = Json::array();
  for (const auto& f : fingerprint(input))
    files.push_back({{"file", f.file}, {"bytes", f.bytes}, {"header_sha256", f.header_sha256}});
  manifest_["input"] = {{"files", files}, {"tensors", tensors}};
  Json tj = Json::array();
  for (std::size_t i = 0; i < targets.size(); ++i)
    tj.push_back({{"name", targets[i]}, {"bytes", bytes[i]}, {"shard", shard[i]}});
  manifest_["targets"] = tj;
}

std::vector<bool> ShardRun::select(const fs::path& out_root, const Checkpoint& input,
                                   const std::vector<std::string>& names,
                                   const std::vector<std::uint64_t>& bytes) {
  const auto shard = assign_shards(bytes, names, spec_.count);
  set_input(input, names, bytes, shard);
  write(out_root);
  std::vector<bool> mine(names.size());
  for (std::size_t i = 0; i < names.size(); ++i)
    mine[i] = shard[i] == spec_.index;
  return mine;
}

void ShardRun::record_checkpoint(const fs::path& out_dir, const Checkpoint& input,
                                 const std::vector<TensorSpec>& plan,
                                 const std::vector<int>& plan_shard, const WriterOptions& options,
                                 const std::vector<std::string>& targets,
                                 const std::vector<std::uint64_t>& target_bytes,
                                 const std::vector<int>& target_shard,
                                 const std::vector<std::string>& part_files) {
  set_input(input, targets, target_bytes, target_shard);
  const fs::path root = root_of(out_dir);
  const fs::path rel = fs::absolute(out_dir).lexically_normal().lexically_relative(root);
  Json p = Json::array();
  for (std::size_t i = 0; i < plan.size(); ++i)
    p.push_back({{"name", plan[i].name},
                 {"dtype", std::string(dtype_name(plan[i].dtype))},
                 {"shape", plan[i].shape},
                 {"shard", plan_shard[i]}});
  Json meta = Json::array();
  for (const auto& [k, v] : options.metadata)
    meta.push_back({k, v});
  std::string dir = rel.generic_string();
  if (dir.empty() || dir == "." || dir == "./") dir = ".";
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  manifest_["checkpoints"].push_back({{"dir", dir},
                                      {"part_files", part_files},
                                      {"writer",
                                       {{"max_shard_size", options.max_shard_size},
                                        {"zstd", options.zstd},
                                        {"zstd_level", options.zstd_level},
                                        {"base_name", options.base_name},
                                        {"metadata", meta},
                                        {"write_metadata", options.write_metadata}}},
                                      {"plan", p}});
  write(root);
}

void ShardRun::write(const fs::path& root) const {
  write_text_file(root / kPartManifest, manifest_.dump(1) + "\n");
}

}  // namespace ckpt
