#include "ckptkit/io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"

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

/// Deepest nesting a header may have: entries are two levels deep, and nothing we read needs more.
constexpr int kMaxHeaderDepth = 64;

/// The header parsed by SAX events straight into TensorInfo values: linear in the header size
/// (no DOM, no ordered map), nesting bounded before anything is built, duplicate tensor names and
/// duplicate fields inside an entry refused (as the reference implementation does).
class HeaderSax {
 public:
  HeaderSax(const std::string& file, SafetensorsHeader& h) : file_(file), h_(h) {}

  bool null() { return scalar("null"); }
  bool boolean(bool v) { return scalar(v ? "true" : "false"); }
  bool number_integer(std::int64_t v) {
    return number(v < 0, static_cast<std::uint64_t>(v), std::to_string(v));
  }
  bool number_unsigned(std::uint64_t v) { return number(false, v, std::to_string(v)); }
  bool number_float(double, const std::string& text) { return scalar(text); }
  bool binary(nlohmann::json::binary_t&) { return scalar("binary"); }
  bool string(std::string& v) {
    if (!skip_ && depth_ == 2 && in_meta_) {
      set_metadata(meta_key_, v);
      return true;
    }
    if (!skip_ && depth_ == 2 && field_ == "dtype") {
      dtype_ = v;
      has_dtype_ = true;
      return true;
    }
    return scalar("\"" + v + "\"");
  }
  bool start_object(std::size_t) {
    enter();
    if (skip_ || depth_ == 1) return true;
    if (depth_ == 2) {
      if (top_key_ == "__metadata__") {
        in_meta_ = true;
        h_.has_metadata = true;
        return true;
      }
      begin_entry();
      return true;
    }
    if (depth_ == 3 && in_meta_)
      bad("", "__metadata__ value of '" + meta_key_ + "' is not a string");
    if (depth_ == 3 && field_ == "dtype") return true;  // reported as a missing dtype string
    if (depth_ == 3 && array_field()) return wrong_container();
    if (depth_ == 4 && array_field()) return element_error("an object");
    skip_from(depth_);
    return true;
  }
  bool key(std::string& k) {
    if (skip_) return true;
    if (depth_ == 1) {
      if ((++keys_ & 0xFFF) == 0) throw_if_interrupted();  // Ctrl-C during a 10⁶-tensor header
      top_key_ = k;  // duplicates are found after the parse, by sorting (check_unique_names)
      if (k == "__metadata__" && std::exchange(seen_metadata_, true))
        bad(k, "name appears twice in the header");
    } else if (depth_ == 2 && in_meta_) {
      meta_key_ = k;
    } else if (depth_ == 2) {
      field_ = k;
      bool* seen = k == "dtype"          ? &seen_dtype_
                   : k == "shape"        ? &seen_shape_
                   : k == "data_offsets" ? &seen_offsets_
                                         : nullptr;
      if (seen && *seen) bad(entry_.name, "field '" + k + "' appears twice in the entry");
      if (seen) *seen = true;
    }
    return true;
  }
  bool end_object() {
    if (!skip_ && depth_ == 2) {
      if (in_meta_)
        in_meta_ = false;
      else
        end_entry();
    }
    leave();
    return true;
  }
  bool start_array(std::size_t) {
    enter();
    if (skip_) return true;
    if (depth_ == 1) bad("", "header does not start with '{'");
    if (depth_ == 2) top_value_not_object();
    if (depth_ == 3 && in_meta_)
      bad("", "__metadata__ value of '" + meta_key_ + "' is not a string");
    if (depth_ == 3 && field_ == "shape") {
      has_shape_ = true;
      return true;
    }
    if (depth_ == 3 && field_ == "data_offsets") {
      has_offsets_ = true;
      return true;
    }
    if (depth_ == 4 && array_field()) return element_error("an array");
    if (depth_ == 3 && field_ == "dtype") return true;
    skip_from(depth_);
    return true;
  }
  bool end_array() {
    leave();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    const std::string what = e.what();
    if (what.find("UTF-8") != std::string::npos || what.find("utf-8") != std::string::npos)
      bad("", "header is not valid UTF-8");
    bad("", "header is not valid JSON (" + what.substr(what.find(']') + 2) + ")");
  }

 private:
  [[noreturn]] void bad(const std::string& tensor, const std::string& what) const {
    fail(ErrorKind::Format, located(file_, tensor, what));
  }
  void enter() {
    if (++depth_ > kMaxHeaderDepth) bad("", "header nested deeper than 64 levels");
  }
  void leave() {
    if (skip_ && depth_ == skip_depth_) skip_ = false;
    --depth_;
  }
  void skip_from(int depth) {
    skip_ = true;
    skip_depth_ = depth;
  }
  /// The value of a top-level key is not an object: __metadata__ or a tensor entry.
  [[noreturn]] void top_value_not_object() const {
    if (top_key_ == "__metadata__") bad("", "__metadata__ is not an object of strings");
    bad(top_key_, "entry is not an object");
  }
  bool array_field() const { return field_ == "shape" || field_ == "data_offsets"; }
  /// Any value but an object, array or the strings string() keeps.
  bool scalar(const std::string& text) {
    if (skip_) return true;
    if (depth_ == 1) top_value_not_object();
    if (depth_ == 2 && in_meta_)
      bad("", "__metadata__ value of '" + meta_key_ + "' is not a string");
    if (depth_ == 2 && array_field()) return wrong_container();
    if (depth_ == 3) return element_error(text);
    return true;
  }
  bool number(bool negative, std::uint64_t v, const std::string& text) {
    if (skip_ || depth_ != 3 || in_meta_ || !array_field()) return scalar(text);
    if (negative) bad(entry_.name, field_ + " has a negative value " + text);
    if (field_ == "shape") {
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        bad(entry_.name, "shape dimension " + std::to_string(v) + " is too large");
      shape_.push_back(v);
    } else {
      offsets_.push_back(v);
    }
    return true;
  }
  bool element_error(const std::string& got) const {
    if (array_field()) bad(entry_.name, field_ + " must hold non-negative integers, got " + got);
    return true;
  }
  bool wrong_container() const {
    if (field_ == "shape") bad(entry_.name, "missing \"shape\" array");
    bad(entry_.name, "missing \"data_offsets\" [begin, end]");
  }
  void set_metadata(const std::string& k, const std::string& v) {
    for (auto& [mk, mv] : h_.metadata)
      if (mk == k) {
        mv = v;  // JSON's last value wins, in the first key's place
        return;
      }
    h_.metadata.emplace_back(k, v);
  }
  void begin_entry() {
    if (top_key_.empty()) bad("", "a tensor has an empty name");
    entry_ = TensorInfo{};
    entry_.name = std::move(top_key_);  // messages name entry_.name from here on
    dtype_.clear();
    shape_.clear();
    offsets_.clear();
    has_dtype_ = has_shape_ = has_offsets_ = false;
    seen_dtype_ = seen_shape_ = seen_offsets_ = false;
    field_.clear();
  }
  void end_entry() {
    const std::string& key = entry_.name;
    if (!has_dtype_) bad(key, "missing \"dtype\" string");
    const auto parsed = parse_dtype(dtype_);
    if (!parsed) bad(key, "unknown dtype \"" + dtype_ + "\"");
    entry_.dtype = *parsed;
    if (!has_shape_) bad(key, "missing \"shape\" array");
    std::uint64_t count = 1;
    for (const std::uint64_t dim : shape_) {
      if (dim != 0 && count > std::numeric_limits<std::uint64_t>::max() / dim)
        bad(key, "shape " + shape_text() + " overflows the element count");
      count *= dim;
      entry_.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const std::uint64_t item = dtype_size(entry_.dtype);
    if (count > std::numeric_limits<std::uint64_t>::max() / item)
      bad(key, "shape " + shape_text() + " overflows the byte count");
    if (!has_offsets_ || offsets_.size() != 2) bad(key, "missing \"data_offsets\" [begin, end]");
    entry_.begin = offsets_[0];
    entry_.end = offsets_[1];
    if (entry_.end < entry_.begin)
      bad(key, "data_offsets end " + std::to_string(entry_.end) + " is before begin " +
                   std::to_string(entry_.begin));
    if (entry_.end > h_.data_size)
      bad(key, "data_offsets end " + std::to_string(entry_.end) +
                   " exceeds the data section size " + std::to_string(h_.data_size));
    if (entry_.end - entry_.begin != count * item)
      bad(key, "holds " + std::to_string(entry_.end - entry_.begin) + " bytes but " +
                   std::string(dtype_name(entry_.dtype)) + " " + shape_str(entry_.shape) +
                   " needs " + std::to_string(count * item));
    h_.tensors.push_back(std::move(entry_));
  }
  std::string shape_text() const {
    std::string t = "[";
    for (std::size_t i = 0; i < shape_.size(); ++i)
      t += (i ? "," : "") + std::to_string(shape_[i]);
    return t + "]";
  }

  const std::string& file_;
  SafetensorsHeader& h_;
  int depth_ = 0;
  bool skip_ = false;
  int skip_depth_ = 0;
  std::string top_key_, meta_key_, field_;
  bool in_meta_ = false;
  bool seen_metadata_ = false;
  std::uint64_t keys_ = 0;
  TensorInfo entry_;
  std::string dtype_;
  std::vector<std::uint64_t> shape_, offsets_;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  bool seen_dtype_ = false, seen_shape_ = false, seen_offsets_ = false;
};

/// A name twice in one header (JSON would keep one silently): found by sorting views of the names,
/// which costs no allocation per name (a hash set of 10⁶ strings was a third of the parse).
void check_unique_names(const SafetensorsHeader& h, const std::string& file) {
  std::vector<std::string_view> names;
  names.reserve(h.tensors.size() + 1);
  for (const auto& t : h.tensors)
    names.emplace_back(t.name);
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) bad(file, std::string(*dup), "name appears twice in the header");
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

  SafetensorsHeader h;
  h.data_start = 8 + n;
  h.data_size = file.size() - h.data_start;
  HeaderSax sax(name, h);
  nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  check_unique_names(h, name);
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
  // Written piece by piece (an ordered_json object would search its keys on every insertion:
  // quadratic for 10⁵ tensors); the bytes are what ordered_json's compact dump gave.
  auto quoted = [](const std::string& s) {
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  };
  std::string text = "{";
  bool first = true;
  if (write_metadata) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata)
      m[k] = v;
    text += "\"__metadata__\":" + m.dump(-1, ' ', false, ojson::error_handler_t::strict);
    first = false;
  }
  for (const auto& t : tensors) {
    ojson e = ojson::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
    if (!first) text += ",";
    first = false;
    text += quoted(t.name) + ":" + e.dump(-1, ' ', false, ojson::error_handler_t::strict);
  }
  text += "}";
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
