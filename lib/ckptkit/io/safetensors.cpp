#include "ckptkit/io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

using ojson = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& file, const std::string& tensor, const std::string& what) {
  fail(ErrorKind::Format, located(file, tensor, what));
}

std::uint64_t read_u64le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

std::uint64_t as_u64(const ojson& v, const std::string& file, const std::string& tensor,
                     const char* field) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    bad(file, tensor, std::string(field) + " has a negative value " + v.dump());
  }
  bad(file, tensor, std::string(field) + " must hold non-negative integers, got " + v.dump());
}

/// Parses JSON rejecting duplicate keys at the top level (nlohmann keeps one silently).
ojson parse_header_json(std::string_view text, const std::string& file) {
  std::unordered_set<std::string> seen;
  std::string duplicate;
  ojson::parser_callback_t cb = [&](int depth, ojson::parse_event_t event, ojson& parsed) {
    if (event == ojson::parse_event_t::key && depth == 1) {
      auto key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  ojson j;
  try {
    j = ojson::parse(text.begin(), text.end(), cb);
  } catch (const ojson::exception& e) {  // parse_error, and out_of_range for a number overflow
    std::string what = e.what();
    if (what.find("UTF-8") != std::string::npos || what.find("utf-8") != std::string::npos)
      bad(file, "", "header is not valid UTF-8");
    bad(file, "", "header is not valid JSON (" + what.substr(what.find(']') + 2) + ")");
  }
  if (!duplicate.empty()) bad(file, duplicate, "name appears twice in the header");
  return j;
}

}  // namespace

SafetensorsHeader parse_safetensors(std::span<const std::byte> file, const std::string& name) {
  if (file.empty()) bad(name, "", "empty file, not a safetensors file");
  if (file.size() < 8)
    bad(name, "",
        "file too small for a safetensors header (" + std::to_string(file.size()) + " bytes)");
  const std::uint64_t n = read_u64le(file.data());
  if (n > kMaxHeaderBytes)
    bad(name, "",
        "header length " + std::to_string(n) + " exceeds the limit of " +
            std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > file.size() - 8)
    bad(name, "",
        "header length " + std::to_string(n) + " runs past the end of the file (" +
            std::to_string(file.size()) + " bytes): truncated file?");
  if (n < 2) bad(name, "", "header of " + std::to_string(n) + " bytes cannot hold a JSON object");
  const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), n);
  if (text.front() != '{') bad(name, "", "header does not start with '{'");
  const ojson j = parse_header_json(text, name);
  if (!j.is_object()) bad(name, "", "header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + n;
  h.data_size = file.size() - h.data_start;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) bad(name, "", "__metadata__ is not an object of strings");
      h.has_metadata = true;
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) bad(name, "", "__metadata__ value of '" + mk + "' is not a string");
        h.metadata.emplace_back(mk, mv.get<std::string>());
      }
      continue;
    }
    if (key.empty()) bad(name, "", "a tensor has an empty name");
    if (!value.is_object()) bad(name, key, "entry is not an object");
    TensorInfo t;
    t.name = key;
    const auto dt = value.find("dtype");
    if (dt == value.end() || !dt->is_string()) bad(name, key, "missing \"dtype\" string");
    const auto parsed = parse_dtype(dt->get<std::string>());
    if (!parsed) bad(name, key, "unknown dtype \"" + dt->get<std::string>() + "\"");
    t.dtype = *parsed;
    const auto sh = value.find("shape");
    if (sh == value.end() || !sh->is_array()) bad(name, key, "missing \"shape\" array");
    std::uint64_t count = 1;
    for (const auto& d : *sh) {
      const std::uint64_t dim = as_u64(d, name, key, "shape");
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        bad(name, key, "shape dimension " + std::to_string(dim) + " is too large");
      if (dim != 0 && count > std::numeric_limits<std::uint64_t>::max() / dim)
        bad(name, key, "shape " + sh->dump() + " overflows the element count");
      count *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const std::uint64_t item = dtype_size(t.dtype);
    if (count > std::numeric_limits<std::uint64_t>::max() / item)
      bad(name, key, "shape " + sh->dump() + " overflows the byte count");
    const auto off = value.find("data_offsets");
    if (off == value.end() || !off->is_array() || off->size() != 2)
      bad(name, key, "missing \"data_offsets\" [begin, end]");
    t.begin = as_u64((*off)[0], name, key, "data_offsets");
    t.end = as_u64((*off)[1], name, key, "data_offsets");
    if (t.end < t.begin)
      bad(name, key,
          "data_offsets end " + std::to_string(t.end) + " is before begin " +
              std::to_string(t.begin));
    if (t.end > h.data_size)
      bad(name, key,
          "data_offsets end " + std::to_string(t.end) + " exceeds the data section size " +
              std::to_string(h.data_size));
    if (t.end - t.begin != count * item)
      bad(name, key,
          "holds " + std::to_string(t.end - t.begin) + " bytes but " +
              std::string(dtype_name(t.dtype)) + " " + shape_str(t.shape) + " needs " +
              std::to_string(count * item));
    h.tensors.push_back(std::move(t));
  }
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  std::uint64_t cursor = 0;
  for (const auto& t : h.tensors) {
    if (t.begin < cursor)
      bad(name, t.name,
          "data overlaps the previous tensor (begins at " + std::to_string(t.begin) +
              ", previous ends at " + std::to_string(cursor) + ")");
    if (t.begin > cursor)
      bad(name, t.name,
          "gap of " + std::to_string(t.begin - cursor) + " bytes before this tensor's data");
    cursor = t.end;
  }
  if (cursor != h.data_size)
    bad(name, "", std::to_string(h.data_size - cursor) + " trailing bytes after the last tensor");
  return h;
}

std::vector<std::byte> serialize_header(const std::vector<TensorInfo>& tensors,
                                        const Metadata& metadata, bool write_metadata) {
  ojson j = ojson::object();
  if (write_metadata) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata)
      m[k] = v;
    j["__metadata__"] = m;
  }
  for (const auto& t : tensors) {
    ojson e = ojson::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
    j[t.name] = e;
  }
  std::string text = j.dump(-1, ' ', false, ojson::error_handler_t::strict);
  while ((8 + text.size()) % 8 != 0)
    text.push_back(' ');
  std::vector<std::byte> out(8 + text.size());
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  return out;
}

}  // namespace ckpt
