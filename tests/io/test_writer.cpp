// Writer: Hugging Face sharding, index content, zstd output, read-back; OutputDir atomicity.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/writer.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::read_bytes;
using ckpt::test::TempDir;
namespace fs = std::filesystem;

namespace {

/// transformers' shard_checkpoint, as a reference: start a new shard when the next tensor would
/// tip the current one over the limit and the current one is not empty.
std::vector<std::pair<std::size_t, std::size_t>> hf_reference(
    const std::vector<std::uint64_t>& sizes, std::uint64_t max) {
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t last = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (last + sizes[i] > max && !shards.back().empty()) {
      shards.emplace_back();
      last = 0;
    }
    shards.back().push_back(i);
    last += sizes[i];
  }
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (const auto& s : shards)
    if (!s.empty()) out.emplace_back(s.front(), s.back() + 1);
  if (out.empty()) out.emplace_back(0, 0);
  return out;
}

std::vector<TensorSpec> u8_plan(const std::vector<std::uint64_t>& sizes) {
  std::vector<TensorSpec> plan;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    plan.push_back(
        {"t" + std::to_string(i) + ".weight", DType::U8, {static_cast<std::int64_t>(sizes[i])}});
  return plan;
}

std::vector<std::byte> pattern(std::size_t n, int seed) {
  std::vector<std::byte> b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<std::byte>((i * 31 + static_cast<std::size_t>(seed) * 7) & 0xff);
  return b;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Writes `sizes` as U8 tensors with distinct contents; returns the contents.
std::vector<std::vector<std::byte>> write_plan(const fs::path& dir,
                                               const std::vector<std::uint64_t>& sizes,
                                               WriterOptions o) {
  ShardedWriter w(dir, u8_plan(sizes), o);
  std::vector<std::vector<std::byte>> data;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    data.push_back(pattern(sizes[i], static_cast<int>(i)));
    w.write("t" + std::to_string(i) + ".weight", data.back());
  }
  w.finish();
  return data;
}

void check_read_back(const fs::path& dir, const std::vector<std::vector<std::byte>>& data) {
  const Checkpoint c = Checkpoint::open(dir);
  REQUIRE(c.tensors().size() == data.size());
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto* t = c.find("t" + std::to_string(i) + ".weight");
    REQUIRE(t != nullptr);
    const auto v = c.view(*t);
    CHECK(std::equal(v.bytes.begin(), v.bytes.end(), data[i].begin(), data[i].end()));
  }
}

}  // namespace

TEST_CASE("plan_shards matches transformers' sharding rule", "[writer]") {
  const std::vector<std::vector<std::uint64_t>> plans = {
      {40, 40, 40}, {150}, {10, 150, 10},         {100, 100},
      {50, 50, 1},  {},    {1, 1, 1, 1, 1, 1, 1}, {99, 2, 99, 2}};
  for (const auto& sizes : plans)
    for (std::uint64_t max : {1ull, 3ull, 100ull, 1000ull}) {
      INFO("plan of " << sizes.size() << " tensors, max " << max);
      CHECK(plan_shards(u8_plan(sizes), max) == hf_reference(sizes, max));
    }
  // The documented cases by hand: a tensor bigger than the limit gets a shard of its own.
  using R = std::vector<std::pair<std::size_t, std::size_t>>;
  CHECK(plan_shards(u8_plan({10, 150, 10}), 100) == R{{0, 1}, {1, 2}, {2, 3}});
  CHECK(plan_shards(u8_plan({40, 40, 40}), 100) == R{{0, 2}, {2, 3}});
  CHECK(plan_shards(u8_plan({50, 50}), 100) == R{{0, 2}});
}

TEST_CASE("sharded output: names, index and read-back", "[writer]") {
  TempDir dir("ckpt-writer");
  WriterOptions o;
  o.max_shard_size = 100;
  o.metadata = {{"format", "pt"}, {"source", "test"}};
  const auto data = write_plan(dir.path(), {10, 150, 60, 50}, o);
  // 10 | 150 (larger than the limit, alone) | 60 | 50  -> 60+50 > 100 so 4 shards.
  for (int i = 1; i <= 4; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-00004.safetensors", i);
    INFO(name);
    CHECK(fs::exists(dir / name));
  }
  CHECK_FALSE(fs::exists(dir / "model.safetensors"));
  const auto index = nlohmann::json::parse(read_text(dir / "model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"].get<std::uint64_t>() == 270);
  CHECK(index["weight_map"].size() == 4);
  CHECK(index["weight_map"]["t1.weight"] == "model-00002-of-00004.safetensors");
  CHECK(index["weight_map"]["t3.weight"] == "model-00004-of-00004.safetensors");
  check_read_back(dir.path(), data);
  const Checkpoint c = Checkpoint::open(dir.path());
  CHECK(c.sharded());
  CHECK(c.shards().size() == 4);
  for (const auto& s : c.shards()) {
    CHECK(s.header.metadata == o.metadata);
    // Header padded to a multiple of 8, as the reference writer does.
    CHECK(s.header.data_start % 8 == 0);
  }
}

TEST_CASE("one shard: model.safetensors without an index, metadata optional", "[writer]") {
  TempDir dir("ckpt-writer1");
  WriterOptions o;
  o.write_metadata = false;
  const auto data = write_plan(dir.path(), {3, 5, 0, 7}, o);
  CHECK(fs::exists(dir / "model.safetensors"));
  CHECK_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  check_read_back(dir.path(), data);
  CHECK_FALSE(Checkpoint::open(dir.path()).shards()[0].header.has_metadata);
}

TEST_CASE("writer rejects out-of-plan tensors and wrong sizes", "[writer]") {
  TempDir dir("ckpt-writer-bad");
  ShardedWriter w(dir.path(), u8_plan({4, 4}), {});
  CHECK_THROWS_AS(w.write("t1.weight", pattern(4, 0)), Error);
  CHECK_THROWS_AS(w.write("t0.weight", pattern(5, 0)), Error);
  w.write("t0.weight", pattern(4, 0));
  CHECK_THROWS_AS(w.finish(), Error);
  CHECK_THROWS_AS(ShardedWriter(dir / "x", {{"a", DType::U8, {1}}, {"a", DType::U8, {1}}}, {}),
                  Error);
}

TEST_CASE("zstd output is read back and decompressible by the zstd command", "[writer][zstd]") {
  TempDir plain_dir("ckpt-writer-plain"), z_dir("ckpt-writer-zst");
  WriterOptions o;
  o.max_shard_size = 3000;
  const std::vector<std::uint64_t> sizes = {1000, 2500, 4000, 10};
  const auto data = write_plan(plain_dir.path(), sizes, o);
  o.zstd = true;
  write_plan(z_dir.path(), sizes, o);
  check_read_back(z_dir.path(), data);
  // The index is plain JSON naming the uncompressed shard names; the shards gain ".zst".
  CHECK(fs::exists(z_dir / "model.safetensors.index.json"));
  const auto index = nlohmann::json::parse(read_text(z_dir / "model.safetensors.index.json"));
  CHECK(index["weight_map"]["t0.weight"] == "model-00001-of-00004.safetensors");
  for (const auto& e : fs::directory_iterator(plain_dir.path())) {
    const std::string name = e.path().filename().string();
    if (name.find(".index.json") != std::string::npos) continue;
    const fs::path zst = z_dir / (name + ".zst");
    REQUIRE(fs::exists(zst));
    const auto expect = read_bytes(e.path());
    CHECK(zstd_decompress(read_bytes(zst), zst.string()) == expect);
    if (std::system("zstd --version >/dev/null 2>&1") != 0) {
      WARN("zstd command not found; skipping the CLI decompression check");
      continue;
    }
    const fs::path out = z_dir / (name + ".cli");
    const std::string cmd = "zstd -q -d -f '" + zst.string() + "' -o '" + out.string() + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    CHECK(read_bytes(out) == expect);
    fs::remove(out);
  }
  // write_safetensors_file with zstd adds ".zst" and reads back.
  std::vector<OwnedTensor> t = {{"w", DType::F32, {2}, pattern(8, 1)}};
  write_safetensors_file(z_dir / "small.safetensors", t, {{"k", "v"}}, true);
  const Checkpoint c = Checkpoint::open(z_dir / "small.safetensors.zst");
  CHECK(c.metadata() == Metadata{{"k", "v"}});
  CHECK(std::ranges::equal(c.view(c.tensors()[0]).bytes, t[0].bytes));
}

TEST_CASE("OutputDir: appears only on commit, never half-written", "[output]") {
  TempDir dir("ckpt-outdir");
  const fs::path final_path = dir / "out";
  {
    OutputDir out(final_path, false);
    CHECK(fs::is_directory(out.path()));
    CHECK(out.path().parent_path() == fs::weakly_canonical(dir.path()));
    CHECK_FALSE(fs::exists(final_path));
    ckpt::write_text_file(out.path() / "a.txt", "hello");
    // Destroyed without commit (an error or a signal): nothing is left.
  }
  CHECK_FALSE(fs::exists(final_path));
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 0);
  {
    OutputDir out(final_path, false);
    ckpt::write_text_file(out.path() / "a.txt", "first");
    out.commit();
  }
  CHECK(read_text(final_path / "a.txt") == "first");
  // Existing output: refused without --force, replaced with it.
  try {
    OutputDir out(final_path, false);
    FAIL("existing output accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Usage);
    CHECK(std::string(e.what()).find("--force") != std::string::npos);
  }
  {
    OutputDir out(final_path, true);
    ckpt::write_text_file(out.path() / "b.txt", "second");
    CHECK(fs::exists(final_path / "a.txt"));  // the old output stays until commit
    out.commit();
  }
  CHECK(fs::exists(final_path / "b.txt"));
  CHECK_FALSE(fs::exists(final_path / "a.txt"));
  {
    OutputDir out(final_path, true);  // forced but abandoned: the old output survives
  }
  CHECK(fs::exists(final_path / "b.txt"));
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("OutputDir refuses output == input, inside it, or around it", "[output]") {
  TempDir dir("ckpt-outdir-in");
  const fs::path in = dir / "model";
  fs::create_directories(in / "sub");
  for (const fs::path& out :
       {in, in / "sub", in / "new", dir / "model" / ".." / "model", dir.path()}) {
    INFO("output " << out);
    try {
      OutputDir o(out, true, {in});
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Usage);
      CHECK(std::string(e.what()).find("input") != std::string::npos);
    }
  }
  // A sibling with a common prefix is fine.
  OutputDir ok(dir / "model2", false, {in});
  CHECK(fs::exists(ok.path()));
  {
    // Missing folders above the output are created, and removed again when it is not committed.
    OutputDir deep(dir / "no" / "such" / "parent", false);
    CHECK(fs::is_directory(dir / "no" / "such"));
  }
  CHECK(!fs::exists(dir / "no"));
  // A file where a folder should be: an Io error.
  { std::ofstream(dir / "file") << "x"; }
  CHECK_THROWS_AS(OutputDir(dir / "file" / "out", false), Error);
}

TEST_CASE("copy_files copies extra files and skips names", "[output]") {
  TempDir dir("ckpt-copy");
  fs::create_directories(dir / "src");
  fs::create_directories(dir / "dst");
  ckpt::write_text_file(dir / "src" / "config.json", "{}");
  ckpt::write_text_file(dir / "src" / "tokenizer.json", "{\"t\":1}");
  copy_files({dir / "src" / "config.json", dir / "src" / "tokenizer.json"}, dir / "dst",
             {"config.json"});
  CHECK_FALSE(fs::exists(dir / "dst" / "config.json"));
  CHECK(read_text(dir / "dst" / "tokenizer.json") == "{\"t\":1}");
}
