// ckptkit inspect CKPT [--json]: tensors, totals, shards, architecture, targets, validity.
#include <cstdio>
#include <string>

#include "ckptkit/commands/inspect/inspect.hpp"
#include "ckptkit/core/units.hpp"
#include "commands.hpp"

namespace ckpt::cli {
namespace {

struct InspectFlags {
  std::string input;
  bool json = false;
  bool scan = false;
  std::vector<std::string> target, exclude;
  bool fan_in_fan_out = false;
};

std::string shape_text(const Json& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i].get<long long>());
  return s + "]";
}

void print_table(const Json& j) {
  std::printf("%s (%s, %zu shard%s)\n", j["path"].get<std::string>().c_str(),
              j["format"].get<std::string>().c_str(), j["shards"].size(),
              j["shards"].size() == 1 ? "" : "s");
  const auto& arch = j["architecture"];
  if (!arch.empty()) {
    std::printf("architecture:");
    for (const auto& [k, v] : arch.items())
      std::printf(" %s=%s", k.c_str(), v.dump().c_str());
    std::printf("\n");
  }
  std::size_t w = 4;
  for (const auto& t : j["tensors"])
    w = std::max(w, t["name"].get<std::string>().size());
  std::printf("\n  %-*s  %-5s  %-16s  %12s  %s\n", static_cast<int>(w), "name", "dtype", "shape",
              "bytes", "target");
  for (const auto& t : j["tensors"]) {
    std::printf("%s %-*s  %-5s  %-16s  %12llu  %s\n", t["target"].get<bool>() ? "*" : " ",
                static_cast<int>(w), t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(), shape_text(t["shape"]).c_str(),
                static_cast<unsigned long long>(t["bytes"].get<std::uint64_t>()),
                t["reason"].get<std::string>().c_str());
  }
  std::printf("\nby dtype:\n");
  for (const auto& [k, v] : j["totals"]["by_dtype"].items())
    std::printf("  %-5s %5llu tensors %14llu params %12s\n", k.c_str(),
                static_cast<unsigned long long>(v["tensors"].get<std::uint64_t>()),
                static_cast<unsigned long long>(v["params"].get<std::uint64_t>()),
                format_bytes(v["bytes"].get<std::uint64_t>()).c_str());
  const auto& tot = j["totals"];
  std::printf("total: %llu tensors, %llu params, %s\n",
              static_cast<unsigned long long>(tot["tensors"].get<std::uint64_t>()),
              static_cast<unsigned long long>(tot["params"].get<std::uint64_t>()),
              format_bytes(tot["bytes"].get<std::uint64_t>()).c_str());
  const auto& tg = j["targets"];
  std::printf(
      "targets (*): %llu tensors, %llu params%s\n",
      static_cast<unsigned long long>(tg["tensors"].get<std::uint64_t>()),
      static_cast<unsigned long long>(tg["params"].get<std::uint64_t>()),
      j["fan_in_fan_out"].get<bool>() ? " (stored [in, out]: transposed as PEFT does)" : "");
  std::printf("verdict: %s\n", j["verdict"].get<std::string>().c_str());
}

}  // namespace

void setup_inspect(CLI::App& app, Run& run) {
  auto f = std::make_shared<InspectFlags>();
  auto* cmd = app.add_subcommand("inspect",
                                 "List tensors, totals, shards and targets; validate a checkpoint");
  cmd->add_option("checkpoint", f->input,
                  "Directory, .safetensors file or index.json (.zst read too)")
      ->required();
  cmd->add_flag("--json", f->json, "Print JSON instead of a table");
  cmd->add_flag("--scan", f->scan, "Also read every float value and count NaN/Inf");
  cmd->add_option("--target", f->target, "Target modules to show as picked (suffixes or regexes)")
      ->delimiter(',');
  cmd->add_option("--exclude", f->exclude, "Modules to leave out")->delimiter(',');
  cmd->footer(
      "Example:\n  ckptkit inspect data/bytegpt-base-bf16\n  ckptkit inspect "
      "model.safetensors.index.json --json | jq .targets");
  cmd->callback([f, &run] {
    run = [f] {
      InspectOptions o;
      o.input = f->input;
      o.targets.target = f->target;
      o.targets.exclude = f->exclude;
      o.scan_values = f->scan;
      const Json j = run_inspect(o);
      if (f->json)
        std::printf("%s\n", j.dump(2).c_str());
      else
        print_table(j);
      return j["valid"].get<bool>() ? 0 : 1;
    };
  });
}

}  // namespace ckpt::cli
