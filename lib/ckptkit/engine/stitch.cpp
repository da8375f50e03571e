#include "ckptkit/engine/stitch.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "ckptkit/adapters/part_configs.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/progress.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/engine/shard.hpp"
#include "ckptkit/engine/stitch_report.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/json_text.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/paths.hpp"
#include "ckptkit/io/targets.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/report/csv.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

/// One part directory and its manifest.
struct Part {
  fs::path dir;
  Json manifest;
  int index = 0;
  std::string output;  // the -o it was written with (replaced by the stitched output in text)
};

std::string read_file(const fs::path& p) {
  // Regular files only: a FIFO planted in a part would block the read forever.
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) fail(ErrorKind::Format, p.string() + ": not a regular file");
  std::ifstream f(p, std::ios::binary);
  if (!f) fail(ErrorKind::Io, p.string() + ": cannot read");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

Json parse_json(const std::string& text, const fs::path& file) {
  return parse_ordered_json_text(text, file.string());
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty() || from == to) return s;
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

std::string shard_str(int k, int n) {
  return std::to_string(k) + "/" + std::to_string(n);
}

/// The fields stitch reads, with their types, and every name it joins to a directory checked by the
/// path policy (io/paths.hpp): a crafted manifest can neither write outside the output nor make
/// a JSON type error escape as an internal error.
void check_manifest_shape(const Json& j, const std::string& file) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) fail(ErrorKind::Format, file + ": " + what);
  };
  need(j.contains("checkpoints") && j["checkpoints"].is_array(), "'checkpoints' is not a list");
  for (const auto& c : j["checkpoints"]) {
    need(c.is_object() && c.contains("dir") && c["dir"].is_string(),
         "a checkpoint entry without a 'dir' string");
    check_plain_relative(c["dir"].get<std::string>(), 16, file, "checkpoint dir", true);
    need(c.contains("plan") && c["plan"].is_array(), "a checkpoint entry without a 'plan' list");
    for (const auto& t : c["plan"])
      need(t.is_object() && t.value("name", Json()).is_string() &&
               t.value("dtype", Json()).is_string() && t.value("shape", Json()).is_array() &&
               t.value("shard", Json()).is_number_integer(),
           "a plan entry without name, dtype, shape and shard");
    need(c.contains("writer") && c["writer"].is_object() &&
             c["writer"].value("base_name", Json()).is_string() &&
             c["writer"].value("max_shard_size", Json()).is_number_unsigned() &&
             c["writer"].value("zstd", Json()).is_boolean() &&
             c["writer"].value("zstd_level", Json()).is_number_integer() &&
             c["writer"].value("write_metadata", Json()).is_boolean() &&
             c["writer"].value("metadata", Json()).is_array(),
         "a checkpoint entry without a complete 'writer'");
    check_plain_relative(c["writer"]["base_name"].get<std::string>(), 1, file, "base_name");
    for (const auto& kv : c["writer"]["metadata"])
      need(kv.is_array() && kv.size() == 2 && kv[0].is_string() && kv[1].is_string(),
           "writer metadata is not a list of string pairs");
    need(c.contains("part_files") && c["part_files"].is_array(), "no 'part_files' list");
    for (const auto& f : c["part_files"]) {
      need(f.is_string(), "a part file name is not a string");
      check_plain_relative(f.get<std::string>(), 1, file, "part file");
    }
  }
}

Part load_part(const fs::path& dir) {
  Part p;
  p.dir = dir;
  if (!fs::is_directory(dir))
    fail(ErrorKind::Usage, dir.string() + ": not a directory (expected a --shard K/N output)");
  const fs::path m = dir / kPartManifest;
  if (!fs::exists(m))
    fail(ErrorKind::Usage, dir.string() + ": no " + kPartManifest +
                               ": not the output of a --shard K/N run (or of a command without "
                               "--shard support)");
  p.manifest = parse_part_manifest(read_file(m), m.string());
  p.index = p.manifest["shard"]["index"].get<int>();
  p.output = p.manifest["output"].get<std::string>();
  return p;
}

/// Orders the parts by index after checking they are the N shards of one job.
std::vector<Part> check_parts(std::vector<Part> parts) {
  const Part& a = parts.front();
  const int n = a.manifest["shard"]["count"].get<int>();
  for (const Part& p : parts) {
    const Json& m = p.manifest;
    const std::string who =
        p.dir.string() + " (shard " + shard_str(p.index, m["shard"]["count"].get<int>()) + ")";
    if (m["shard"]["count"].get<int>() != n)
      fail(ErrorKind::Usage, who + ": split into " + m["shard"]["count"].dump() + " shards but " +
                                 a.dir.string() + " into " + std::to_string(n) +
                                 ": parts of different runs");
    if (m.value("command", "") != a.manifest.value("command", ""))
      fail(ErrorKind::Usage, who + ": made by '" + m.value("command", "") + "' but " +
                                 a.dir.string() + " by '" + a.manifest.value("command", "") + "'");
    if (m.value("input", Json()) != a.manifest.value("input", Json()))
      fail(ErrorKind::Usage, who + ": made from a different input than " + a.dir.string() +
                                 " (checkpoint files or header sha256 differ)");
    if (m.value("settings_sha256", "") != a.manifest.value("settings_sha256", ""))
      fail(ErrorKind::Usage, who + ": made with different settings than " + a.dir.string() +
                                 " (the command lines differ beyond --shard, -o, --threads, "
                                 "--memory-budget, --report, --quiet, --json, --force)");
    if (m.value("targets", Json()) != a.manifest.value("targets", Json()))
      fail(ErrorKind::Usage, who + ": assigns the targets differently than " + a.dir.string());
    if (p.index < 0 || p.index >= n) fail(ErrorKind::Format, who + ": shard index out of range");
  }
  std::stable_sort(parts.begin(), parts.end(),
                   [](const Part& x, const Part& y) { return x.index < y.index; });
  for (std::size_t i = 1; i < parts.size(); ++i)
    if (parts[i].index == parts[i - 1].index)
      fail(ErrorKind::Usage, parts[i - 1].dir.string() + " and " + parts[i].dir.string() +
                                 " are both shard " + shard_str(parts[i].index, n));
  if (static_cast<int>(parts.size()) != n) {
    std::string missing;
    for (int k = 0, i = 0; k < n; ++k) {
      if (i < static_cast<int>(parts.size()) && parts[i].index == k) {
        ++i;
        continue;
      }
      missing += (missing.empty() ? "" : ", ") + shard_str(k, n);
    }
    fail(ErrorKind::Usage, "missing part(s): shard " + missing + " (got " +
                               std::to_string(parts.size()) + " of " + std::to_string(n) + ")");
  }
  return parts;
}

/// Regular files under `dir`, relative, sorted.
std::vector<std::string> list_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path().lexically_relative(dir).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string join_rel(const std::string& dir, const std::string& file) {
  return dir == "." ? file : dir + "/" + file;
}

/// The single-run order and the target of each module, from the manifest.
struct Order {
  std::map<std::string, std::size_t> position;  // input tensor name -> index
  std::vector<std::string> targets;             // target tensor names, checkpoint order
  std::vector<int> target_shard;
  std::map<std::string, std::size_t> target_of_module;
  std::vector<std::string> candidates;  // module names of every 2-D input tensor

  explicit Order(const Json& m) {
    const Json& tensors = m["input"]["tensors"];
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::string name = tensors[i]["name"].get<std::string>();
      position.emplace(name, i);
      if (tensors[i]["ndim"].get<int>() == 2)
        candidates.push_back(TargetSelector::module_name(name));
    }
    std::vector<std::pair<std::size_t, std::size_t>> byp;
    const Json& t = m["targets"];
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::string name = t[i]["name"].get<std::string>();
      const auto it = position.find(name);
      byp.emplace_back(it == position.end() ? position.size() + i : it->second, i);
    }
    std::sort(byp.begin(), byp.end());
    for (const auto& [pos, i] : byp) {
      targets.push_back(t[i]["name"].get<std::string>());
      target_shard.push_back(t[i]["shard"].get<int>());
      target_of_module.emplace(TargetSelector::module_name(targets.back()), targets.size() - 1);
    }
  }

  std::size_t pos_of(const Json& row) const {
    if (!row.is_object() || !row.contains("name") || !row["name"].is_string())
      return position.size();
    const auto it = position.find(row["name"].get<std::string>());
    return it == position.end() ? position.size() : it->second;
  }

  /// The target whose module name is the longest dotted run inside `key` (adapter keys such as
  /// base_model.model.<module>.lora_A.weight); targets.size() when none.
  std::size_t target_of_key(const std::string& key) const {
    std::size_t best = targets.size(), best_len = 0;
    for (std::size_t b = 0; b <= key.size(); b = key.find('.', b) + 1) {
      for (std::size_t e = key.find('.', b);; e = key.find('.', e + 1)) {
        const std::size_t end = e == std::string::npos ? key.size() : e;
        const auto it = target_of_module.find(key.substr(b, end - b));
        if (it != target_of_module.end() && end - b > best_len) {
          best = it->second;
          best_len = end - b;
        }
        if (e == std::string::npos) break;
      }
      if (key.find('.', b) == std::string::npos) break;
    }
    return best;
  }

  std::vector<std::string> modules_of(int shard) const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < targets.size(); ++i)
      if (shard < 0 || target_shard[i] == shard)
        out.push_back(TargetSelector::module_name(targets[i]));
    return out;
  }

  /// The adapter modules of the whole job and of each part, for merging adapter configs.
  PartModules part_modules(const std::vector<Part>& parts) const {
    PartModules m;
    for (const auto& p : parts)
      m.part_modules.push_back(modules_of(p.index));
    m.all_modules = modules_of(-1);
    m.candidates = candidates;
    m.position_of_key = [this](const std::string& key) { return target_of_key(key); };
    return m;
  }
};

/// Re-streams one checkpoint in the single-run plan, each tensor from the part that owns it.
std::vector<std::string> stitch_checkpoint(const std::vector<Part>& parts, std::size_t c,
                                           const fs::path& out_root, bool progress_on) {
  const Json& entry = parts.front().manifest["checkpoints"][c];
  const std::string dir = entry["dir"].get<std::string>();
  std::vector<TensorSpec> plan;
  std::vector<int> owner;
  for (const auto& p : entry["plan"]) {
    const auto dt = parse_dtype(p["dtype"].get<std::string>());
    if (!dt)
      fail(ErrorKind::Format, (parts.front().dir / kPartManifest).string() + ": tensor '" +
                                  p["name"].get<std::string>() + "': unknown dtype");
    plan.push_back({p["name"].get<std::string>(), *dt, p["shape"].get<Shape>()});
    owner.push_back(p["shard"].get<int>());
  }
  const Json& w = entry["writer"];
  WriterOptions options;
  options.max_shard_size = w["max_shard_size"].get<std::uint64_t>();
  options.zstd = w["zstd"].get<bool>();
  options.zstd_level = w["zstd_level"].get<int>();
  options.base_name = w["base_name"].get<std::string>();
  options.write_metadata = w["write_metadata"].get<bool>();
  for (const auto& kv : w["metadata"])
    options.metadata.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());

  // Open each part's checkpoint through the files it wrote (index when it has one).
  std::vector<std::optional<Checkpoint>> in(parts.size());
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (std::find(owner.begin(), owner.end(), parts[k].index) == owner.end()) continue;
    const Json& pe = parts[k].manifest["checkpoints"][c];
    if (pe.value("dir", "") != dir || pe["plan"] != entry["plan"] ||
        pe["writer"] != entry["writer"])
      fail(ErrorKind::Usage, parts[k].dir.string() + ": checkpoint '" + dir +
                                 "' was planned differently than in " + parts.front().dir.string());
    std::string file;
    for (const auto& f : pe["part_files"]) {
      const std::string name = f.get<std::string>();
      if (name.ends_with(".index.json") || file.empty()) file = name;
    }
    if (file.empty())
      fail(ErrorKind::Format, parts[k].dir.string() + ": checkpoint '" + dir + "' has no files");
    in[k] = Checkpoint::open(parts[k].dir / dir / file);
  }
  std::uint64_t total = 0;
  for (const auto& t : plan)
    total += t.nbytes();
  const fs::path out_dir = out_root / dir;
  fs::create_directories(out_dir);
  ShardedWriter writer(out_dir, plan, options);
  Progress progress("stitch", total, progress_on);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const std::size_t k = static_cast<std::size_t>(owner[i]);
    if (k >= parts.size() || !in[k])
      fail(ErrorKind::Format, "tensor '" + plan[i].name + "': no part owns it");
    const Checkpoint& ck = *in[k];
    const CheckpointTensor* t = ck.find(plan[i].name);
    const std::string where = (parts[k].dir / dir).string();
    if (!t) fail(ErrorKind::Format, located(where, plan[i].name, "missing in its part"));
    if (t->info.dtype != plan[i].dtype || t->info.shape != plan[i].shape)
      fail(ErrorKind::Format,
           located(ck.file_of(*t), plan[i].name,
                   "is " + std::string(dtype_name(t->info.dtype)) + " " + shape_str(t->info.shape) +
                       " but the plan says " + std::string(dtype_name(plan[i].dtype)) + " " +
                       shape_str(plan[i].shape)));
    writer.write(plan[i].name, ck.view(*t).bytes);
    ck.release(*t);
    progress.advance(plan[i].nbytes(), plan[i].name);
  }
  writer.finish();
  progress.finish();
  return writer.files();
}

/// Merges a small tensor file (adapter weights): every tensor once, in the single-run order (the
/// order of the targets the keys name; a part's own order within one target).
void stitch_tensor_file(const std::vector<Part>& parts, const std::string& rel, const Order& order,
                        const fs::path& out_root) {
  struct Item {
    std::size_t target, part, pos;
    OwnedTensor t;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  Metadata metadata;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const fs::path file = parts[k].dir / rel;
    const Checkpoint ck = Checkpoint::open(file);
    if (k == 0)
      metadata = ck.metadata();
    else if (ck.metadata() != metadata)
      fail(ErrorKind::Usage,
           file.string() + ": __metadata__ differs from " + (parts.front().dir / rel).string());
    std::size_t pos = 0;
    for (const auto& t : ck.tensors()) {
      if (!seen.insert(t.info.name).second)
        fail(ErrorKind::Usage, located(file.string(), t.info.name, "is in more than one part"));
      const TensorView v = ck.view(t);
      OwnedTensor o;
      o.name = t.info.name;
      o.dtype = t.info.dtype;
      o.shape = t.info.shape;
      o.bytes.assign(v.bytes.begin(), v.bytes.end());
      items.push_back({order.target_of_key(t.info.name), k, pos++, std::move(o)});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return std::tie(a.target, a.part, a.pos) < std::tie(b.target, b.part, b.pos);
  });
  std::vector<OwnedTensor> tensors;
  for (auto& it : items)
    tensors.push_back(std::move(it.t));
  const bool zstd = rel.ends_with(".zst");
  const fs::path out = out_root / (zstd ? rel.substr(0, rel.size() - 4) : rel);
  fs::create_directories(out.parent_path());
  write_safetensors_file(out, tensors, metadata, zstd);
}

/// A per-tensor table (first column: the tensor name): the same header in every part, then all
/// parts' records in checkpoint order (a part's own order within one tensor).
std::string merge_csv(const std::vector<std::string>& texts, const Order& order,
                      const std::string& what) {
  std::vector<std::tuple<std::size_t, std::size_t, std::size_t, std::string>> recs;
  std::string header;
  for (std::size_t k = 0; k < texts.size(); ++k) {
    auto r = csv_records(texts[k]);
    if (r.empty()) fail(ErrorKind::Format, what + ": empty CSV in a part");
    if (k == 0)
      header = r[0];
    else if (r[0] != header)
      fail(ErrorKind::Usage, what + ": the CSV header differs between parts");
    for (std::size_t i = 1; i < r.size(); ++i) {
      const auto fields = csv_fields(r[i]);
      const Json row = {{"name", fields.empty() ? std::string() : fields.front()}};
      recs.emplace_back(order.pos_of(row), k, i, std::move(r[i]));
    }
  }
  std::stable_sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a), std::get<2>(a)) <
           std::tie(std::get<0>(b), std::get<1>(b), std::get<2>(b));
  });
  std::string out = header;
  for (const auto& r : recs)
    out += std::get<3>(r);
  return out;
}

/// A part's text with its own output path replaced by the stitched output's.
std::string part_text(const Part& p, const std::string& rel, const std::string& output) {
  return replace_all(read_file(p.dir / rel), p.output, output);
}

/// The parts' report.json merged (engine/stitch_report.hpp).
Json stitch_report(const std::vector<Part>& parts, const Order& order,
                   const std::vector<std::string>& files, const CommandSpec* spec) {
  std::vector<Json> reports;
  std::vector<std::string> where;
  for (const auto& p : parts) {
    reports.push_back(parse_json(read_file(p.dir / "report.json"), p.dir / "report.json"));
    where.push_back((p.dir / "report.json").string());
  }
  return merge_part_reports(
      reports, where, [&order](const Json& row) { return order.pos_of(row); }, files, spec);
}

}  // namespace

namespace {

Json stitch_parts(const StitchOptions& o);

}  // namespace

Json parse_part_manifest(std::string_view text, const std::string& file) {
  Json j = parse_ordered_json_text(text, file);
  if (!j.is_object() || j.value("format", Json()) != "ckptkit-part" || !j.contains("shard") ||
      !j["shard"].is_object() || !j["shard"].value("index", Json()).is_number_integer() ||
      !j["shard"].value("count", Json()).is_number_integer() ||
      !j.value("output", Json("")).is_string() || !j.value("command", Json("")).is_string())
    fail(ErrorKind::Format, file + ": not a ckptkit part manifest");
  if (j.value("version", Json(0)) != kPartManifestVersion)
    fail(ErrorKind::Unsupported,
         file + ": part manifest version " + printable(j.value("version", Json(0)).dump()) +
             " (this build reads " + std::to_string(kPartManifestVersion) + ")");
  if (!j.contains("output")) j["output"] = "";
  check_manifest_shape(j, file);
  return j;
}

Json run_stitch(const StitchOptions& o) {
  try {
    return stitch_parts(o);
  } catch (const nlohmann::json::exception& e) {
    // A field check_manifest_shape does not cover had the wrong type or range.
    fail(ErrorKind::Format, "part manifests (" + std::string(kPartManifest) +
                                "): malformed field (" + printable(e.what()) + ")");
  }
}

namespace {

Json stitch_parts(const StitchOptions& o) {
  if (o.parts.empty()) fail(ErrorKind::Usage, "stitch: no part directories given");
  std::vector<Part> loaded;
  for (const auto& d : o.parts)
    loaded.push_back(load_part(d));
  const std::vector<Part> parts = check_parts(std::move(loaded));
  const Order order(parts.front().manifest);
  const std::string output = o.output.string();

  // Which files each part holds: checkpoint weights (re-streamed) are per part; every other file
  // must be in every part.
  std::vector<std::set<std::string>> weights(parts.size());
  const Json& cks = parts.front().manifest["checkpoints"];
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const Json& m = parts[k].manifest["checkpoints"];
    if (m.size() != cks.size())
      fail(ErrorKind::Usage, parts[k].dir.string() + ": " + std::to_string(m.size()) +
                                 " checkpoints but " + parts[0].dir.string() + " has " +
                                 std::to_string(cks.size()));
    for (const auto& c : m)
      for (const auto& f : c["part_files"])
        weights[k].insert(join_rel(c["dir"].get<std::string>(), f.get<std::string>()));
    weights[k].insert(kPartManifest);
  }
  std::vector<std::vector<std::string>> files(parts.size());
  for (std::size_t k = 0; k < parts.size(); ++k)
    for (const auto& f : list_files(parts[k].dir))
      if (!weights[k].count(f)) files[k].push_back(f);
  for (std::size_t k = 1; k < parts.size(); ++k)
    if (files[k] != files[0]) {
      std::vector<std::string> diff;
      std::set_symmetric_difference(files[0].begin(), files[0].end(), files[k].begin(),
                                    files[k].end(), std::back_inserter(diff));
      fail(ErrorKind::Usage, parts[k].dir.string() + ": holds other files than " +
                                 parts[0].dir.string() + " ('" + diff.front() + "')");
    }

  std::vector<fs::path> inputs(o.parts.begin(), o.parts.end());
  OutputDir out(o.output, o.force, inputs, o.report_path);
  std::vector<std::string> stitched_files;
  for (std::size_t c = 0; c < cks.size(); ++c) {
    auto f = stitch_checkpoint(parts, c, out.path(), o.progress);
    if (c == 0) stitched_files = std::move(f);
  }
  const CommandSpec* spec =
      find_command_spec(o.commands, parts.front().manifest.value("command", ""));
  const auto derived = [&](const std::string& rel) {
    return spec && std::find(spec->derived_files.begin(), spec->derived_files.end(), rel) !=
                       spec->derived_files.end();
  };
  Json report = Json::object();
  const bool has_report =
      std::find(files[0].begin(), files[0].end(), "report.json") != files[0].end();
  if (has_report) report = stitch_report(parts, order, stitched_files, spec);
  for (const auto& rel : files[0]) {
    const fs::path dst = out.path() / rel;
    fs::create_directories(dst.parent_path());
    const std::string name = fs::path(rel).filename().string();
    if (rel == "report.json" || derived(rel)) continue;  // last, from the stitched report
    if (name.ends_with(".safetensors") || name.ends_with(".safetensors.zst")) {
      stitch_tensor_file(parts, rel, order, out.path());
    } else if (name == "adapter_config.json") {
      std::vector<nlohmann::ordered_json> cfgs;
      std::vector<std::string> where;
      for (const auto& p : parts) {
        cfgs.push_back(parse_json(part_text(p, rel, output), p.dir / rel));
        where.push_back((p.dir / rel).string());
      }
      write_text_file(dst, merge_part_adapter_configs(cfgs, where, order.part_modules(parts)));
    } else {
      // Anything else is the same in every part (config.json, tokenizer files, ...), up to the
      // output path a part may name, or a per-tensor CSV table.
      const std::string first = read_file(parts[0].dir / rel);
      bool same = true;
      for (std::size_t k = 1; k < parts.size() && same; ++k)
        same = read_file(parts[k].dir / rel) == first;
      std::string text = first;
      if (!same) {
        text = part_text(parts[0], rel, output);
        std::vector<std::string> texts{text};
        for (std::size_t k = 1; k < parts.size(); ++k)
          texts.push_back(part_text(parts[k], rel, output));
        if (name.ends_with(".csv")) {
          write_text_file(dst, merge_csv(texts, order, (parts[0].dir / rel).string()));
          continue;
        }
        for (std::size_t k = 1; k < parts.size(); ++k)
          if (texts[k] != text)
            fail(ErrorKind::Unsupported, (parts[k].dir / rel).string() + ": differs from " +
                                             (parts[0].dir / rel).string() +
                                             " and stitch has no rule to merge it");
      }
      write_text_file(dst, text);
    }
  }
  if (spec && spec->derive && !spec->derived_files.empty()) spec->derive(report, out.path());
  const std::string text = report.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  if (has_report) write_text_file(out.path() / "report.json", text);
  out.commit();
  out.write_report_copy(text);
  return report;
}

}  // namespace

std::string stitch_summary(const Json& report, std::size_t parts,
                           const std::filesystem::path& output) {
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(output))
    files += e.is_regular_file() ? 1 : 0;
  return "stitched " + std::to_string(parts) + " parts of '" +
         report.value("command", std::string("?")) + "' into " + output.string() + ": " +
         std::to_string(report.value("tensors", Json::array()).size()) + " report rows, " +
         std::to_string(files) + " files\n";
}

}  // namespace ckpt
