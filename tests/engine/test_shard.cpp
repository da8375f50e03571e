// --shard K/N: the assignment of targets to shards (deterministic, balanced, complete) and a
// library-level round trip: N partial streams stitched back equal a single stream, byte for byte.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/engine/shard.hpp"
#include "ckptkit/engine/stitch.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::read_bytes;
using ckpt::test::TempDir;
namespace fs = std::filesystem;

namespace {

/// Sizes like a transformer's: a few large, many equal mid-size, some tiny.
void model_like(std::vector<std::uint64_t>& bytes, std::vector<std::string>& names) {
  for (int l = 0; l < 7; ++l)
    for (const char* m : {"q", "k", "v", "o", "up", "down"}) {
      names.push_back("layers." + std::to_string(l) + "." + m);
      const bool mlp = m[0] == 'u' || m[0] == 'd';
      bytes.push_back(mlp ? 4096ull * 11008 * 2 : 4096ull * 4096 * 2);
    }
  names.push_back("embed");
  bytes.push_back(32000ull * 4096 * 2);
  names.push_back("tiny");
  bytes.push_back(8);
}

}  // namespace

TEST_CASE("shard assignment is complete, balanced within the largest target, deterministic",
          "[shard]") {
  std::vector<std::uint64_t> bytes;
  std::vector<std::string> names;
  model_like(bytes, names);
  const std::uint64_t largest = *std::max_element(bytes.begin(), bytes.end());
  for (int n : {1, 2, 3, 5, 8, 64}) {
    const auto s = assign_shards(bytes, names, n);
    REQUIRE(s.size() == names.size());
    std::vector<std::uint64_t> load(static_cast<std::size_t>(n), 0);
    for (std::size_t i = 0; i < s.size(); ++i) {
      REQUIRE(s[i] >= 0);
      REQUIRE(s[i] < n);
      load[static_cast<std::size_t>(s[i])] += bytes[i];  // each target in exactly one shard
    }
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    INFO("N = " << n << ": lightest " << *lo << ", heaviest " << *hi << " bytes");
    CHECK(*hi - *lo <= largest);
    CHECK(std::accumulate(load.begin(), load.end(), std::uint64_t{0}) ==
          std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0}));
    // The same assignment whatever order the targets come in (it is by name and size only).
    std::vector<std::size_t> perm(names.size());
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    std::reverse(perm.begin(), perm.end());
    std::rotate(perm.begin(), perm.begin() + 5, perm.end());
    std::vector<std::uint64_t> b2;
    std::vector<std::string> n2;
    for (std::size_t i : perm) {
      b2.push_back(bytes[i]);
      n2.push_back(names[i]);
    }
    const auto s2 = assign_shards(b2, n2, n);
    for (std::size_t j = 0; j < perm.size(); ++j)
      CHECK(s2[j] == s[perm[j]]);
  }
}

TEST_CASE("more shards than targets leaves some shards empty, never a target twice", "[shard]") {
  const auto s = assign_shards({10, 10}, {"a", "b"}, 4);
  CHECK(s == std::vector<int>{0, 1});
}

TEST_CASE("shard spec K/N parses 0-based and rejects the rest", "[shard]") {
  const auto s = parse_shard_spec("2/3");
  CHECK(s.index == 2);
  CHECK(s.count == 3);
  for (const char* bad : {"3/3", "1/0", "x", "1/", "/2", "-1/2", "1/2/3", "1.5/3", ""}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_shard_spec(bad), Error);
  }
}

TEST_CASE("the settings fingerprint ignores where and how a part runs, not what it computes",
          "[shard]") {
  const auto fp = [](std::vector<std::string> a) { return settings_fingerprint(a); };
  const std::string base =
      fp({"ckptkit", "svd-init", "m", "--rank", "8", "-o", "p0", "--shard", "0/3"});
  CHECK(base == fp({"ckptkit", "svd-init", "m", "--rank", "8", "-o", "elsewhere", "--shard=2/3",
                    "--threads", "7", "--memory-budget", "4G", "-q", "--json", "--force"}));
  CHECK(base != fp({"ckptkit", "svd-init", "m", "--rank", "16", "-o", "p0", "--shard", "0/3"}));
  CHECK(base != fp({"ckptkit", "svd-init", "other", "--rank", "8", "-o", "p0", "--shard", "0/3"}));
}

namespace {

/// Negates every 2-D bf16 weight (a computed tensor that differs from its input); the rest passes.
StreamJob negating_job(const Checkpoint& in) {
  StreamJob job;
  job.input = &in;
  job.plan = [](const CheckpointTensor& t) {
    TensorPlan p;
    if (t.info.shape.size() == 2) {
      p.passthrough = false;
      p.outputs = {{t.info.name, t.info.dtype, t.info.shape}};
      p.working_set = t.info.nbytes();
    }
    return p;
  };
  job.compute = [](const CheckpointTensor& t, const TensorView& v) {
    TensorResult r;
    OwnedTensor o{t.info.name, t.info.dtype, t.info.shape, {v.bytes.begin(), v.bytes.end()}};
    for (std::size_t i = 1; i < o.bytes.size(); i += 2)
      o.bytes[i] ^= std::byte{0x80};  // bf16 sign
    r.outputs.push_back(std::move(o));
    return r;
  };
  return job;
}

WriterOptions small_shards(const Checkpoint& in) {
  WriterOptions w;
  w.max_shard_size = 3'000'000;  // several files and an index
  w.metadata = in.metadata();
  return w;
}

/// Streams `in` as kN parts (part K with K+1 threads, last part first) into dir/partK.
std::vector<fs::path> stream_parts(const Checkpoint& in, const fs::path& dir, int n) {
  std::vector<fs::path> parts;
  for (int k = n - 1; k >= 0; --k) {
    const fs::path part = dir / ("part" + std::to_string(k));
    fs::create_directories(part);
    ExecOptions e;
    e.progress = false;
    e.threads = 1 + k;
    e.shard = std::make_shared<ShardRun>(ShardSpec{k, n}, part,
                                         std::vector<std::string>{"ckptkit", "test"});
    stream_checkpoint(negating_job(in), part, small_shards(in), e, "test");
    parts.push_back(part);
  }
  return parts;
}

Json read_json(const fs::path& p) {
  const auto bytes = read_bytes(p);
  return Json::parse(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace

TEST_CASE("N partial streams stitch into the single stream's files, byte for byte", "[shard]") {
  TempDir dir("ckpt-shard");
  const Checkpoint in = Checkpoint::open(ckpt::test::data_dir() / "bytegpt-base-bf16");
  ExecOptions exec;
  exec.progress = false;
  fs::create_directories(dir / "single");
  stream_checkpoint(negating_job(in), dir / "single", small_shards(in), exec, "test");

  constexpr int kN = 3;
  const std::vector<fs::path> parts = stream_parts(in, dir.path(), kN);
  std::map<std::string, int> owners;
  for (const auto& part : parts) {
    const Checkpoint written = Checkpoint::open(part);  // alive for the whole loop
    for (const auto& t : written.tensors())
      owners[t.info.name] += 1;
  }
  CHECK(owners.size() == in.tensors().size());  // every tensor in some part
  for (const auto& [name, count] : owners) {
    INFO(name);
    CHECK(count == 1);  // and in exactly one
  }
  StitchOptions so;
  so.parts = parts;
  so.output = dir / "stitched";
  so.progress = false;
  run_stitch(so);
  std::size_t compared = 0;
  for (const auto& e : fs::directory_iterator(dir / "single")) {
    INFO(e.path().filename());
    CHECK(read_bytes(e.path()) == read_bytes(dir / "stitched" / e.path().filename()));
    ++compared;
  }
  CHECK(compared > 2);
  CHECK_FALSE(fs::exists(dir / "stitched" / kPartManifest));

  // A part missing: refused, nothing written.
  so.parts.pop_back();
  so.output = dir / "incomplete";
  CHECK_THROWS_WITH(run_stitch(so), Catch::Contains("missing part"));
  CHECK_FALSE(fs::exists(dir / "incomplete"));
}

TEST_CASE("stitch folds totals through the command's spec and names no totals key itself",
          "[shard]") {
  TempDir dir("ckpt-shard-spec");
  const Checkpoint in = Checkpoint::open(ckpt::test::data_dir() / "bytegpt-base-bf16");
  constexpr int kN = 3;
  const std::vector<fs::path> parts = stream_parts(in, dir.path(), kN);
  const Json manifest = read_json(parts.front() / kPartManifest);

  // A test double of a command, with totals no real command has: a count, an integer sum and
  // a ratio of raw sums that only comes out bit for bit when folded in checkpoint order.
  CommandSpec spec;
  spec.name = manifest["command"].get<std::string>();
  spec.totals = [](const Json& report, const std::vector<std::string>& files) {
    const Json& rows = report["tensors"];
    const double sq = sum_of_row_sums(rows, "sq");
    return Json{{"targets", rows.size()},
                {"name_chars", sum_of_counts(rows, "chars")},
                {"rms", std::sqrt(sq / static_cast<double>(rows.size()))},
                {"files", files}};
  };
  const auto row_of = [](const std::string& name) {
    double x = 0.1;
    for (char c : name)
      x = x * 1.37 + static_cast<unsigned char>(c) / 7.0;  // far from round numbers
    return Json{{"name", name}, {"chars", name.size()}, {"sums", {{"sq", x * x}}}};
  };
  Json all_rows = Json::array();
  for (const auto& t : in.tensors())
    if (t.info.shape.size() == 2) all_rows.push_back(row_of(t.info.name));
  for (const auto& part : parts) {
    const Json m = read_json(part / kPartManifest);
    const int k = m["shard"]["index"].get<int>();
    Json report = {{"tool", "ckptkit"}, {"command", spec.name}, {"settings", Json::object()}};
    report["tensors"] = Json::array();
    for (const auto& t : m["targets"])
      if (t["shard"].get<int>() == k) report["tensors"].push_back(row_of(t["name"]));
    Json totals = spec.totals(report, {});
    totals["seconds"] = 1.0 + k;
    totals["same_everywhere"] = "yes";
    report["totals"] = totals;
    std::ofstream(part / "report.json") << report.dump(2);
  }
  StitchOptions so;
  so.parts = parts;
  so.output = dir / "stitched";
  so.progress = false;
  so.commands = {spec};
  const Json stitched = run_stitch(so);
  const Json& t = stitched["totals"];
  const Json expected = spec.totals({{"tensors", all_rows}}, {});
  CHECK(t["targets"] == all_rows.size());
  CHECK(t["name_chars"] == expected["name_chars"]);
  CHECK(t["rms"].get<double>() == expected["rms"].get<double>());  // bit for bit
  CHECK(t["seconds"].get<double>() == 1.0 + (kN - 1));             // the slowest part
  CHECK(t["same_everywhere"] == "yes");
  CHECK(t["files"].size() > 2);            // the stitched checkpoint's files, handed to the fold
  CHECK(stitched["tensors"] == all_rows);  // every part's rows, in checkpoint order

  // Without the spec the parts' totals differ and stitch has no rule: refused, not guessed.
  so.commands.clear();
  so.output = dir / "no-spec";
  CHECK_THROWS_WITH(run_stitch(so), Catch::Contains("no rule"));
  CHECK_FALSE(fs::exists(dir / "no-spec"));
}
