#include "ckptkit/commands/inspect/inspect.hpp"

#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/units.hpp"

#include <cmath>
#include <map>

#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/io/checkpoint.hpp"

namespace ckpt {

Json run_inspect(const InspectOptions& options) {
  const Checkpoint c = Checkpoint::open(options.input);
  const TargetSelector targets(options.targets, c.config());
  Json j;
  j["tool"] = "ckptkit";  // the same envelope as report.json (docs/report-schema.md)
  j["version"] = CKPTKIT_VERSION;
  j["schema_version"] = kReportSchemaVersion;
  j["command"] = "inspect";
  j["path"] = c.path().string();  // an output root: the checkpoint part read
  j["format"] = c.sharded() ? "sharded" : "single";
  j["shards"] = Json::array();
  const auto fps = fingerprint(c);
  for (std::size_t i = 0; i < c.shards().size(); ++i) {
    const auto& s = c.shards()[i];
    j["shards"].push_back({{"file", fps[i].file},
                           {"bytes", fps[i].bytes},
                           {"tensors", s.header.tensors.size()},
                           {"header_bytes", s.header.data_start},
                           {"header_sha256", fps[i].header_sha256}});
  }
  Json arch = Json::object();
  if (c.config() && c.config()->is_object()) {
    for (const char* k : {"model_type", "architectures", "hidden_size", "intermediate_size",
                          "num_hidden_layers", "num_attention_heads", "vocab_size", "torch_dtype"})
      if (c.config()->contains(k)) arch[k] = (*c.config())[k];
  }
  j["architecture"] = arch;
  j["fan_in_fan_out"] = targets.fan_in_fan_out();
  j["module_naming"] = checkpoint_naming(c, options.targets).assumption;
  Json meta = Json::object();
  for (const auto& [k, v] : c.metadata())
    meta[k] = v;
  j["metadata"] = meta;

  struct Totals {
    std::uint64_t count = 0, params = 0, bytes = 0;
  };
  std::map<std::string, Totals> by_dtype;
  Totals all, picked;
  std::uint64_t nonfinite = 0;
  j["tensors"] = Json::array();
  for (const auto& t : c.tensors()) {
    const auto d = targets.decide(t.info);
    const auto params = static_cast<std::uint64_t>(numel(t.info.shape));
    auto& bt = by_dtype[std::string(dtype_name(t.info.dtype))];
    for (Totals* tot : {&bt, &all}) {
      tot->count += 1;
      tot->params += params;
      tot->bytes += t.info.nbytes();
    }
    if (d.selected) {
      picked.count += 1;
      picked.params += params;
      picked.bytes += t.info.nbytes();
    }
    Json row = {{"name", t.info.name},
                {"dtype", std::string(dtype_name(t.info.dtype))},
                {"shape", t.info.shape},
                {"bytes", t.info.nbytes()},
                {"shard", c.shards()[t.shard].path.filename().string()},
                {"target", d.selected},
                {"reason", d.reason}};
    if (options.scan_values && is_float(t.info.dtype)) {
      std::uint64_t bad = 0;
      for (float v : to_f32(c.view(t)))
        if (!std::isfinite(v)) ++bad;
      row["nonfinite"] = bad;
      nonfinite += bad;
      c.release(t);
    }
    j["tensors"].push_back(std::move(row));
  }
  Json dt = Json::object();
  for (const auto& [k, v] : by_dtype)
    dt[k] = {{"tensors", v.count}, {"params", v.params}, {"bytes", v.bytes}};
  j["totals"] = {
      {"tensors", all.count}, {"params", all.params}, {"bytes", all.bytes}, {"by_dtype", dt}};
  j["targets"] = {{"tensors", picked.count}, {"params", picked.params}, {"bytes", picked.bytes}};
  std::string verdict = "valid: headers, offsets and index are consistent";
  if (options.scan_values)
    verdict += nonfinite ? "; " + std::to_string(nonfinite) + " non-finite values found"
                         : "; all float values finite";
  j["valid"] = nonfinite == 0;
  j["verdict"] = verdict;
  return j;
}

namespace {

std::string shape_text(const Json& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i].get<long long>());
  return s + "]";
}

}  // namespace

std::string inspect_table(const Json& j) {
  std::string out;
  out += strprintf("%s (%s, %zu shard%s)\n", printable(j["path"].get<std::string>(), 4096).c_str(),
                   j["format"].get<std::string>().c_str(), j["shards"].size(),
                   j["shards"].size() == 1 ? "" : "s");
  const auto& arch = j["architecture"];
  if (!arch.empty()) {
    out += strprintf("architecture:");
    for (const auto& [k, v] : arch.items())
      out += strprintf(" %s=%s", k.c_str(), v.dump().c_str());
    out += strprintf("\n");
  }
  // Names come from the file: control bytes are shown escaped, never sent to the terminal.
  auto shown = [](const Json& t) { return printable(t["name"].get<std::string>(), 4096); };
  std::size_t w = 4;
  for (const auto& t : j["tensors"])
    w = std::max(w, shown(t).size());
  out += strprintf("\n  %-*s  %-5s  %-16s  %12s  %s\n", static_cast<int>(w), "name", "dtype",
                   "shape", "bytes", "target");
  for (const auto& t : j["tensors"]) {
    out += strprintf("%s %-*s  %-5s  %-16s  %12llu  %s\n", t["target"].get<bool>() ? "*" : " ",
                     static_cast<int>(w), shown(t).c_str(), t["dtype"].get<std::string>().c_str(),
                     shape_text(t["shape"]).c_str(),
                     static_cast<unsigned long long>(t["bytes"].get<std::uint64_t>()),
                     t["reason"].get<std::string>().c_str());
  }
  out += strprintf("\nby dtype:\n");
  for (const auto& [k, v] : j["totals"]["by_dtype"].items())
    out += strprintf("  %-5s %5llu tensors %14llu params %12s\n", k.c_str(),
                     static_cast<unsigned long long>(v["tensors"].get<std::uint64_t>()),
                     static_cast<unsigned long long>(v["params"].get<std::uint64_t>()),
                     format_bytes(v["bytes"].get<std::uint64_t>()).c_str());
  const auto& tot = j["totals"];
  out += strprintf("total: %llu tensors, %llu params, %s\n",
                   static_cast<unsigned long long>(tot["tensors"].get<std::uint64_t>()),
                   static_cast<unsigned long long>(tot["params"].get<std::uint64_t>()),
                   format_bytes(tot["bytes"].get<std::uint64_t>()).c_str());
  const auto& tg = j["targets"];
  out += strprintf(
      "targets (*): %llu tensors, %llu params%s\n",
      static_cast<unsigned long long>(tg["tensors"].get<std::uint64_t>()),
      static_cast<unsigned long long>(tg["params"].get<std::uint64_t>()),
      j["fan_in_fan_out"].get<bool>() ? " (stored [in, out]: transposed as PEFT does)" : "");
  out += "adapter names: " + j["module_naming"].get<std::string>() + "\n";
  out += strprintf("verdict: %s\n", j["verdict"].get<std::string>().c_str());
  return out;
}

}  // namespace ckpt
