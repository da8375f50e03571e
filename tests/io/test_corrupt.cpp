// The corrupt-file suite: every malformed input must throw ckpt::Error of kind Format (Usage for
// paths that hold no checkpoint) with one line naming the file and, where there is one, the
// tensor. Each case is checked both through parse_safetensors on memory and through
// Checkpoint::open on a real file, so the CLI path (exit code 2) is covered too.
#include <zstd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/writer.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::raw_safetensors;
using ckpt::test::TempDir;
using ckpt::test::write_bytes;
namespace fs = std::filesystem;

namespace {

/// a: F32 [2,2] at [0,16), b: F16 [3] at [16,22): 22 data bytes.
const std::string kGood =
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
    R"("b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}})";

std::vector<std::byte> with_header_len(std::uint64_t n, std::size_t total) {
  std::vector<std::byte> out(total, std::byte{'{'});
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  return out;
}

struct Case {
  std::string label;
  std::vector<std::byte> bytes;
  std::string tensor;  // expected in the message; empty when the problem is file-wide
  std::string what;    // a word the message must contain
};

std::vector<Case> file_cases() {
  std::vector<Case> cs;
  auto good = raw_safetensors(kGood, 22);
  auto hdr = [](const std::string& json, std::size_t data) { return raw_safetensors(json, data); };
  cs.push_back({"empty file", {}, "", "empty"});
  cs.push_back(
      {"file shorter than 8 bytes", std::vector<std::byte>(5, std::byte{1}), "", "too small"});
  {
    auto t = good;
    t.resize(t.size() - 3);
    cs.push_back({"truncated in the data section", t, "b", "exceeds"});
  }
  {
    auto t = good;
    t.resize(8 + kGood.size() / 2);
    cs.push_back({"truncated in the header", t, "", "past the end"});
  }
  cs.push_back({"header length past EOF", with_header_len(1000, 100), "", "past the end"});
  cs.push_back({"huge header length", with_header_len(1ull << 62, 100), "", "exceeds the limit"});
  cs.push_back({"header length 0", with_header_len(0, 8), "", "cannot hold"});
  cs.push_back({"invalid JSON", hdr(R"({"a":{"dtype":"F32",)", 0), "", "not valid JSON"});
  cs.push_back({"non-object header (array)", hdr(R"([1,2,3])", 0), "", "'{'"});
  cs.push_back({"header with trailing garbage",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}} xx)", 4), "", "JSON"});
  cs.push_back({"a field twice in one entry",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"dtype":"F32","data_offsets":[0,4]}})", 4),
                "a", "appears twice"});
  cs.push_back({"nesting deeper than 64 levels",
                hdr(R"({"a":{"x":)" + std::string(100, '[') + std::string(100, ']') + "}}", 0), "",
                "deeper than 64"});
  cs.push_back({"tensor entry not an object", hdr(R"({"w":[1,2]})", 0), "w", "not an object"});
  cs.push_back({"unknown dtype",
                hdr(R"({"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", 4), "w",
                "unknown dtype"});
  cs.push_back(
      {"missing dtype", hdr(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), "w", "dtype"});
  cs.push_back({"negative shape",
                hdr(R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,4]}})", 4), "w",
                "negative"});
  cs.push_back({"fractional shape",
                hdr(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "w",
                "integers"});
  cs.push_back({"shape not an array",
                hdr(R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", 16), "w", "shape"});
  cs.push_back(
      {"overflowing shape product",
       hdr(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4),
       "w", "overflows"});
  cs.push_back(
      {"shape product overflowing bytes",
       hdr(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})", 4), "w",
       "overflows"});
  cs.push_back({"byte count != shape x itemsize",
                hdr(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "w",
                "needs 12"});
  cs.push_back({"offsets out of range",
                hdr(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "w",
                "exceeds"});
  cs.push_back({"end before begin",
                hdr(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", 8), "w",
                "before begin"});
  cs.push_back({"negative offset",
                hdr(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", 4), "w",
                "negative"});
  cs.push_back({"data_offsets of three numbers",
                hdr(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}})", 4), "w",
                "data_offsets"});
  cs.push_back({"overlapping tensors",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                    R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                    6),
                "b", "overlaps"});
  cs.push_back({"gap between tensors",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                    R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})",
                    10),
                "b", "gap"});
  cs.push_back({"gap before the first tensor",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6), "a", "gap"});
  cs.push_back({"trailing bytes",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 9), "",
                "trailing"});
  cs.push_back({"duplicate names",
                hdr(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                    R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                    8),
                "a", "twice"});
  {
    const std::string h =
        std::string("{\"w") + "\xff\xfe" + R"(":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
    cs.push_back({"non-UTF-8 tensor name", hdr(h, 4), "", "UTF-8"});
  }
  // A name with a newline (valid JSON "\n") must not break the one-line message.
  cs.push_back({"control character in a tensor name",
                hdr(R"({"a\nb":{"dtype":"X","shape":[4],"data_offsets":[0,4]}})", 4), "a\\x0ab",
                "unknown dtype"});
  cs.push_back({"empty tensor name",
                hdr(R"({"":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4), "",
                "empty name"});
  cs.push_back(
      {"__metadata__ not an object",
       hdr(R"({"__metadata__":"pt","a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4), "",
       "__metadata__"});
  cs.push_back(
      {"__metadata__ value not a string",
       hdr(R"({"__metadata__":{"n":3},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4),
       "", "__metadata__"});
  return cs;
}

void check_error(const std::function<void()>& f, ErrorKind kind, const std::string& file,
                 const std::string& tensor, const std::string& what) {
  try {
    f();
    FAIL("no error thrown");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(e.kind() == kind);
    CHECK(msg.find(file) != std::string::npos);
    if (!tensor.empty()) CHECK(msg.find("tensor '" + tensor + "'") != std::string::npos);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("the good fixture parses (so the corrupt cases fail for their own reason)", "[corrupt]") {
  const auto h = parse_safetensors(raw_safetensors(kGood, 22), "good.safetensors");
  REQUIRE(h.tensors.size() == 2);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[1].dtype == DType::F16);
  CHECK(h.has_metadata);
  REQUIRE(h.metadata.size() == 1);
  CHECK(h.metadata[0].second == "pt");
  CHECK(h.data_size == 22);
}

TEST_CASE("corrupt safetensors files: Format error naming file and tensor", "[corrupt]") {
  TempDir dir("ckpt-corrupt");
  const auto cases = file_cases();
  CHECK(cases.size() >= 25);
  int n = 0;
  for (const auto& c : cases) {
    SECTION(c.label) {
      const std::string name = "case" + std::to_string(n) + ".safetensors";
      check_error([&] { parse_safetensors(c.bytes, name); }, ErrorKind::Format, name, c.tensor,
                  c.what);
      const fs::path p = dir / name;
      write_bytes(p, c.bytes);
      check_error([&] { Checkpoint::open(p); }, ErrorKind::Format, p.string(), c.tensor, c.what);
    }
    ++n;
  }
}

namespace {

/// A valid two-shard checkpoint written by the library's own writer.
void write_sharded(const fs::path& dir) {
  std::vector<TensorSpec> plan = {{"x.weight", DType::U8, {8}}, {"y.weight", DType::U8, {8}}};
  WriterOptions o;
  o.max_shard_size = 8;
  ShardedWriter w(dir, plan, o);
  std::vector<std::byte> b(8, std::byte{3});
  w.write("x.weight", b);
  w.write("y.weight", b);
  w.finish();
}

std::string index_json(const std::string& weight_map) {
  return R"({"metadata":{"total_size":16},"weight_map":)" + weight_map + "}";
}

void write_text(const fs::path& p, const std::string& s) {
  write_bytes(p, std::vector<std::byte>(reinterpret_cast<const std::byte*>(s.data()),
                                        reinterpret_cast<const std::byte*>(s.data()) + s.size()));
}

}  // namespace

TEST_CASE("corrupt sharded checkpoints and paths", "[corrupt]") {
  TempDir dir("ckpt-corrupt-index");
  const fs::path ck = dir / "ck";
  fs::create_directories(ck);
  write_sharded(ck);
  const fs::path index = ck / "model.safetensors.index.json";
  REQUIRE(fs::exists(index));
  REQUIRE(Checkpoint::open(ck).tensors().size() == 2);
  const std::string s1 = "model-00001-of-00002.safetensors",
                    s2 = "model-00002-of-00002.safetensors";

  SECTION("index naming a missing shard") {
    write_text(index, index_json(R"({"x.weight":")" + s1 +
                                 R"(","y.weight":"model-00009-of-00009.safetensors"})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "",
                "does not exist");
  }
  SECTION("index naming a tensor the shard lacks") {
    write_text(index, index_json(R"({"x.weight":")" + s1 + R"(","y.weight":")" + s2 +
                                 R"(","z.weight":")" + s2 + R"("})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "z.weight",
                "does not hold");
  }
  SECTION("index placing a tensor in the wrong shard") {
    write_text(index, index_json(R"({"x.weight":")" + s2 + R"(","y.weight":")" + s2 + R"("})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "x.weight",
                "does not hold");
  }
  SECTION("index missing a tensor the shards hold") {
    write_text(index, index_json(R"({"x.weight":")" + s1 + R"(","x2":")" + s2 + R"("})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "x2",
                "does not hold");
  }
  SECTION("index with non-object weight_map") {
    write_text(index, index_json(R"(["x.weight"])"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "", "weight_map");
  }
  SECTION("index weight_map value not a string") {
    write_text(index, index_json(R"({"x.weight":1})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "x.weight",
                "file name");
  }
  SECTION("index with empty weight_map") {
    write_text(index, index_json("{}"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "", "empty");
  }
  SECTION("index not valid JSON") {
    write_text(index, R"({"weight_map": {)");
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "",
                "not valid JSON");
  }
  SECTION("index not an object") {
    write_text(index, R"([1])");
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "",
                "not a JSON object");
  }
  SECTION("index shard name with '/'") {
    write_text(index,
               index_json(R"({"x.weight":"../ck/)" + s1 + R"(","y.weight":")" + s2 + R"("})"));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, index.string(), "",
                "plain file name");
  }
  SECTION("a tensor in two shards") {
    // Rewrite shard 2 to hold x.weight too.
    std::vector<OwnedTensor> t = {{"x.weight", DType::U8, {8}, std::vector<std::byte>(8)},
                                  {"y.weight", DType::U8, {8}, std::vector<std::byte>(8)}};
    write_safetensors_file(ck / s2, t, {});
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, s2, "x.weight", "also present");
  }
  SECTION("a corrupt shard behind a good index") {
    write_bytes(ck / s2, raw_safetensors(
                             R"({"y.weight":{"dtype":"U8","shape":[8],"data_offsets":[0,9]}})", 9));
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, s2, "y.weight", "needs 8");
  }
  SECTION("directory without weights") {
    const fs::path empty = dir / "empty";
    fs::create_directories(empty);
    write_text(empty / "config.json", "{}");
    check_error([&] { Checkpoint::open(empty); }, ErrorKind::Usage, empty.string(), "",
                "no .safetensors");
  }
  SECTION("no such path") {
    check_error([&] { Checkpoint::open(dir / "nope"); }, ErrorKind::Usage, "nope", "",
                "no such file");
  }
  SECTION("config.json not valid JSON") {
    write_text(ck / "config.json", "{oops");
    check_error([&] { Checkpoint::open(ck); }, ErrorKind::Format, "config.json", "",
                "not valid JSON");
  }
}

TEST_CASE("corrupt zstd inputs", "[corrupt]") {
  TempDir dir("ckpt-corrupt-zst");
  SECTION("not a zstd stream") {
    const fs::path p = dir / "model.safetensors.zst";
    write_bytes(p, raw_safetensors(kGood, 22));
    check_error([&] { Checkpoint::open(p); }, ErrorKind::Format, p.string(), "", "zstd");
  }
  SECTION("truncated zstd stream") {
    const fs::path good = dir / "good.safetensors";
    std::vector<OwnedTensor> t = {
        {"w", DType::F32, {64}, std::vector<std::byte>(256, std::byte{7})}};
    write_safetensors_file(good, t, {}, true);
    auto bytes = ckpt::test::read_bytes(dir / "good.safetensors.zst");
    REQUIRE(bytes.size() > 12);
    REQUIRE(Checkpoint::open(dir / "good.safetensors.zst").tensors().size() == 1);
    bytes.resize(bytes.size() - 6);
    const fs::path p = dir / "cut.safetensors.zst";
    write_bytes(p, bytes);
    check_error([&] { Checkpoint::open(p); }, ErrorKind::Format, p.string(), "", "zstd");
  }
  SECTION("empty .zst file") {
    const fs::path p = dir / "e.safetensors.zst";
    write_bytes(p, {});
    check_error([&] { Checkpoint::open(p); }, ErrorKind::Format, p.string(), "", "zstd");
  }
  SECTION("valid zstd of a corrupt safetensors") {
    // A well-formed zstd frame around a file with one trailing byte: the parse error names the
    // .zst.
    auto plain = raw_safetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 5);
    std::vector<std::byte> z(ZSTD_compressBound(plain.size()));
    const std::size_t n = ZSTD_compress(z.data(), z.size(), plain.data(), plain.size(), 3);
    REQUIRE_FALSE(ZSTD_isError(n));
    z.resize(n);
    const fs::path p = dir / "t.safetensors.zst";
    write_bytes(p, z);
    check_error([&] { Checkpoint::open(p); }, ErrorKind::Format, p.string(), "", "trailing");
  }
}
