// --shard K/N: the assignment of targets to shards (deterministic, balanced, complete) and a
// library-level round trip: N partial streams stitched back equal a single stream, byte for byte.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <numeric>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/pipeline/shard.hpp"
#include "ckptkit/pipeline/stitch.hpp"
#include "ckptkit/pipeline/stream.hpp"
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

TEST_CASE("N partial streams stitch into the single stream's files, byte for byte",
          "[shard][.wip]") {
  TempDir dir("ckpt-shard");
  const Checkpoint in = Checkpoint::open(ckpt::test::data_dir() / "bytegpt-base-bf16");
  // Negate every 2-D weight (a computed tensor that differs from its input); the rest passes.
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
  WriterOptions w;
  w.max_shard_size = 3'000'000;  // several files and an index
  w.metadata = in.metadata();
  ExecOptions exec;
  exec.progress = false;
  fs::create_directories(dir / "single");
  stream_checkpoint(job, dir / "single", w, exec, "test");

  constexpr int kN = 3;
  std::vector<fs::path> parts;
  std::map<std::string, int> owners;
  for (int k = kN - 1; k >= 0; --k) {
    const fs::path part = dir / ("part" + std::to_string(k));
    fs::create_directories(part);
    ExecOptions e = exec;
    e.threads = 1 + k;
    e.shard = std::make_shared<ShardRun>(ShardSpec{k, kN}, part,
                                         std::vector<std::string>{"ckptkit", "test"});
    stream_checkpoint(job, part, w, e, "test");
    parts.push_back(part);
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
