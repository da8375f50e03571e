// The PyTorch .bin reader on torch.save's own files (data/torch-bin, made with torch 1.13) and on
// hand-built archives whose pickles try what a hostile file would: other globals, deep nesting,
// cycles through the memo, containers changed after use, views past their storage.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/torch_bin.hpp"

using namespace ckpt;
using namespace std::string_literals;  // pickles hold NUL bytes

namespace {

void put(std::string& s, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i)
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

/// A zip of stored entries, as torch.save writes them (no ZIP64, no CRC check on read).
std::vector<std::byte> zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, central;
  for (const auto& [name, data] : entries) {
    const std::uint64_t local = out.size();
    put(out, 0x04034b50, 4);
    put(out, 20, 2), put(out, 0, 2), put(out, 0, 2), put(out, 0, 4), put(out, 0, 4);
    put(out, data.size(), 4), put(out, data.size(), 4), put(out, name.size(), 2), put(out, 0, 2);
    out += name + data;
    put(central, 0x02014b50, 4);
    put(central, 20, 2), put(central, 20, 2), put(central, 0, 2), put(central, 0, 2);
    put(central, 0, 4), put(central, 0, 4), put(central, data.size(), 4);
    put(central, data.size(), 4), put(central, name.size(), 2), put(central, 0, 2);
    put(central, 0, 2), put(central, 0, 2), put(central, 0, 2), put(central, 0, 4);
    put(central, local, 4);
    central += name;
  }
  const std::uint64_t cd = out.size();
  out += central;
  put(out, 0x06054b50, 4), put(out, 0, 2), put(out, 0, 2), put(out, entries.size(), 2);
  put(out, entries.size(), 2), put(out, central.size(), 4), put(out, cd, 4), put(out, 0, 2);
  std::vector<std::byte> bytes(out.size());
  std::memcpy(bytes.data(), out.data(), out.size());
  return bytes;
}

/// {'w': tensor(storage '0' of `numel` floats, offset, size, stride)} as torch.save pickles it.
std::string state_dict_pickle(int numel, int offset, std::vector<int> size,
                              std::vector<int> stride) {
  std::string p =
      "\x80\x02"
      "ccollections\nOrderedDict\n)R";
  p += "(X";
  put(p, 1, 4);
  p += "w";
  p += "ctorch._utils\n_rebuild_tensor_v2\n(";
  p += "(X";
  put(p, 7, 4);
  p += "storage";
  p += "ctorch\nFloatStorage\nX";
  put(p, 1, 4);
  p += "0X";
  put(p, 3, 4);
  p += "cpuJ";
  put(p, static_cast<std::uint64_t>(numel), 4);
  p += "tQJ";
  put(p, static_cast<std::uint64_t>(offset), 4);
  p += "(";
  for (int s : size) {
    p += "J";
    put(p, static_cast<std::uint64_t>(s), 4);
  }
  p += "t(";
  for (int s : stride) {
    p += "J";
    put(p, static_cast<std::uint64_t>(s), 4);
  }
  p += "t\x89"
       "ccollections\nOrderedDict\n)RtRu.";
  return p;
}

std::vector<std::byte> archive(const std::string& pickle, int floats) {
  std::string data(static_cast<std::size_t>(floats) * 4, '\0');
  for (int i = 0; i < floats; ++i) {
    const float f = static_cast<float>(i);
    std::memcpy(data.data() + 4 * i, &f, 4);
  }
  return zip(
      {{"archive/data.pkl", pickle}, {"archive/byteorder", "little"}, {"archive/data/0", data}});
}

std::string error_of(const std::vector<std::byte>& file, ErrorKind* kind = nullptr) {
  try {
    parse_torch_bin(file, "t.bin");
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    CHECK(std::strchr(e.what(), '\n') == nullptr);
    return e.what();
  }
  return "";
}

std::vector<std::byte> fixture(const std::string& name) {
  const char* data = std::getenv("CKPTKIT_DATA");
  const auto f = FileBytes::open(std::filesystem::path(data ? data : "data") / "torch-bin" / name);
  return {f->bytes().begin(), f->bytes().end()};
}

}  // namespace

TEST_CASE("torch.save files: tensors, tied storages, strided views") {
  const auto tied = parse_torch_bin(fixture("tied.bin"), "tied.bin");
  REQUIRE(tied.header.tensors.size() == 3);
  CHECK(tied.owned.empty());  // all contiguous: ranges of the file itself
  const TensorInfo* e = nullptr;
  const TensorInfo* h = nullptr;
  for (const auto& t : tied.header.tensors) {
    if (t.name == "embed.weight") e = &t;
    if (t.name == "lm_head.weight") h = &t;
  }
  REQUIRE((e && h));
  CHECK((e->begin == h->begin && e->end == h->end));  // one storage, two names
  const auto views = parse_torch_bin(fixture("views.bin"), "views.bin");
  CHECK(!views.owned.empty());  // a transposed view: gathered
  CHECK(views.header.tensors.size() == 4);
  ErrorKind kind{};
  CHECK(error_of(fixture("evil.bin"), &kind).find("GLOBAL 'os system'") != std::string::npos);
  CHECK(kind == ErrorKind::Unsupported);
  CHECK(error_of(fixture("legacy.bin"), &kind).find("legacy") != std::string::npos);
}

TEST_CASE("a hand-built state dict reads, and views are checked against their storage") {
  const auto ok = parse_torch_bin(archive(state_dict_pickle(6, 0, {2, 3}, {3, 1}), 6), "t.bin");
  REQUIRE(ok.header.tensors.size() == 1);
  CHECK(ok.header.tensors[0].shape == Shape{2, 3});
  // Transposed [3, 2] view of the same storage: gathered as 0 3 1 4 2 5.
  const auto tr = parse_torch_bin(archive(state_dict_pickle(6, 0, {3, 2}, {1, 3}), 6), "t.bin");
  REQUIRE(tr.owned.size() == 24);
  float v[6];
  std::memcpy(v, tr.owned.data(), 24);
  CHECK((v[0] == 0 && v[1] == 3 && v[2] == 1 && v[3] == 4 && v[4] == 2 && v[5] == 5));
  CHECK(error_of(archive(state_dict_pickle(6, 2, {2, 3}, {3, 1}), 6)).find("past its storage") !=
        std::string::npos);
  CHECK(error_of(archive(state_dict_pickle(4, 0, {1000, 4}, {0, 1}), 4)).find("larger than") !=
        std::string::npos);
  CHECK(error_of(archive(state_dict_pickle(6, 0, {2, 3}, {3, 1}), 2)).find("fewer bytes") !=
        std::string::npos);
}

TEST_CASE("hostile pickles: depth, cycles, frozen containers, other opcodes") {
  auto run = [](const std::string& p) { return error_of(archive(p, 1)); };
  std::string deep = "\x80\x02";
  for (int i = 0; i < 40; ++i)
    deep += "]";
  for (int i = 0; i < 39; ++i)
    deep += "a";
  deep += ".";
  CHECK(run(deep).find("deeper than 16") != std::string::npos);
  // l = []; l.append(l) through the memo.
  const std::string self_loop =
      "\x80\x02]q\x00h\x00"
      "a."s;
  CHECK(run(self_loop).find("in itself") != std::string::npos);
  // a = []; b = [a]; a.append(1): a is frozen once inside b.
  const std::string frozen =
      "\x80\x02]q\x00]h\x00"
      "ah\x00K\x01"
      "a0."s;
  CHECK(run(frozen).find("after it was placed") != std::string::npos);
  ErrorKind kind{};
  CHECK(error_of(archive("\x80\x02(ios\nsystem\n.", 1), &kind).find("opcode") != std::string::npos);
  CHECK(kind == ErrorKind::Unsupported);
  CHECK(run("\x80\x02"
            "cbuiltins\neval\n.")
            .find("GLOBAL 'builtins eval'") != std::string::npos);
  CHECK(run("\x80\x02}.").find("") != std::string::npos);  // an empty state dict is fine
  CHECK(run("\x80\x02]").find("truncated") != std::string::npos);
}
