#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/json_text.hpp"
#include "ckptkit/io/output_layout.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/lossless.hpp"
#include "ckptkit/io/paths.hpp"
#include "ckptkit/io/torch_bin.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

std::string strip_zst(const std::string& s) {
  return s.ends_with(".zst") ? s.substr(0, s.size() - 4) : s;
}

bool is_index_name(const std::string& file) {
  return strip_zst(file).ends_with(".safetensors.index.json");
}
bool is_weights_name(const std::string& file) {
  return strip_zst(file).ends_with(".safetensors");
}
// PyTorch's own files (io/torch_bin.hpp): used when a folder has no safetensors weights.
bool is_torch_index_name(const std::string& file) {
  return strip_zst(file).ends_with(".bin.index.json");
}
bool is_torch_weights_name(const std::string& file) {
  const std::string f = strip_zst(file);
  return f.ends_with(".bin") || f.ends_with(".pt") || f.ends_with(".pth");
}

/// Weights of other frameworks (TensorFlow, Flax, GGUF, ONNX): never read, and never copied into an
/// output, where they would contradict the new weights.
bool is_foreign_weights_name(const std::string& file) {
  const std::string f = strip_zst(file);
  for (const char* ext : {".h5", ".msgpack", ".gguf", ".onnx", ".ckpt.index", ".ot"})
    if (f.ends_with(ext)) return true;
  return f.find(".ckpt.data-") != std::string::npos;
}

/// A weight file's header: safetensors, or a torch zip read as one (a copy in memory only when a
/// tensor is a strided view).
void read_shard(Shard& s) {
  const std::string name = s.path.string();
  const auto bytes = s.file->bytes();
  const bool safetensors_name = is_weights_name(s.path.filename().string());
  if (!safetensors_name && (is_zip(bytes) || is_legacy_torch(bytes))) {
    TorchBin t = parse_torch_bin(bytes, name);
    if (!t.owned.empty()) s.file = FileBytes::from_memory(std::move(t.owned), name);
    s.header = std::move(t.header);
    return;
  }
  s.header = parse_safetensors(bytes, name);
}

std::optional<nlohmann::json> read_config(const fs::path& dir) {
  const fs::path p = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  const nlohmann::json j = read_json_file(p);
  if (!j.is_object()) fail(ErrorKind::Format, p.string() + ": not a JSON object");
  return j;
}

/// The file of a shard named in an index: as written, or with ".zst" added.
fs::path resolve_shard(const fs::path& dir, const std::string& name,
                       const std::string& index_name) {
  check_plain_relative(name, 1, index_name, "shard name");
  std::error_code ec;
  for (const std::string& candidate : {name, name + ".zst"})
    if (fs::is_regular_file(dir / candidate, ec)) return dir / candidate;
  fail(ErrorKind::Format,
       index_name + ": names shard '" + name + "', which does not exist in " + dir.string());
}

}  // namespace

bool is_checkpoint_file_name(const std::string& file) {
  return is_index_name(file) || is_weights_name(file) || is_torch_index_name(file) ||
         is_torch_weights_name(file);
}

namespace {

/// An index.json read by SAX events: the weight_map pairs in file order, linear in the text (an
/// ordered_json DOM searched its keys on every insertion: 16 s for a 93,696-entry index), nesting
/// bounded, a tensor named twice refused.
class IndexSax {
 public:
  explicit IndexSax(const std::string& file) : file_(file) {}
  std::vector<std::pair<std::string, std::string>> pairs;
  bool found = false;

  bool null() { return value("null"); }
  bool boolean(bool) { return value("a boolean"); }
  bool number_integer(std::int64_t) { return value("a number"); }
  bool number_unsigned(std::uint64_t) { return value("a number"); }
  bool number_float(double, const std::string&) { return value("a number"); }
  bool binary(nlohmann::json::binary_t&) { return value("binary"); }
  bool string(std::string& v) {
    if (depth_ != 2 || !in_map_) return value("a string");
    pairs.emplace_back(key_, v);
    return true;
  }
  bool start_object(std::size_t) {
    enter();
    if (depth_ == 1) return true;
    if (depth_ == 2 && top_key_ == "weight_map") {
      if (found) fail(ErrorKind::Format, file_ + ": \"weight_map\" appears twice");
      in_map_ = found = true;
      return true;
    }
    if (depth_ == 3 && in_map_)
      fail(ErrorKind::Format, located(file_, key_, "weight_map value is not a file name"));
    return true;
  }
  bool key(std::string& k) {
    if (depth_ == 1) top_key_ = k;
    if (depth_ == 2 && in_map_) {
      if (!names_.insert(k).second)
        fail(ErrorKind::Format, located(file_, k, "named twice in the weight_map"));
      key_ = k;
    }
    return true;
  }
  bool end_object() {
    if (depth_ == 2) in_map_ = false;
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    enter();
    if (depth_ == 1) fail(ErrorKind::Format, file_ + ": index is not a JSON object");
    if (depth_ == 2 && top_key_ == "weight_map")
      fail(ErrorKind::Format, file_ + ": missing \"weight_map\" object");
    if (depth_ == 3 && in_map_)
      fail(ErrorKind::Format, located(file_, key_, "weight_map value is not a file name"));
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, file_ + ": not valid JSON (" + std::string(e.what()) + ")");
  }

 private:
  void enter() {
    if (++depth_ > 64) fail(ErrorKind::Format, file_ + ": nested deeper than 64 levels");
  }
  bool value(const char* what) {
    if (depth_ == 0) fail(ErrorKind::Format, file_ + ": index is not a JSON object");
    if (depth_ == 1 && top_key_ == "weight_map")
      fail(ErrorKind::Format, file_ + ": missing \"weight_map\" object");
    if (depth_ == 2 && in_map_)
      fail(ErrorKind::Format,
           located(file_, key_, std::string("weight_map value is ") + what + ", not a file name"));
    return true;
  }
  const std::string& file_;
  int depth_ = 0;
  bool in_map_ = false;
  std::string top_key_, key_;
  std::unordered_set<std::string> names_;
};

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_index_json(std::string_view text,
                                                                  const std::string& file) {
  IndexSax sax(file);
  nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  if (!sax.found) fail(ErrorKind::Format, file + ": missing \"weight_map\" object");
  if (sax.pairs.empty()) fail(ErrorKind::Format, file + ": weight_map is empty");
  return std::move(sax.pairs);
}

Checkpoint Checkpoint::open(const fs::path& given) {
  std::error_code ec;
  if (!fs::exists(given, ec))
    fail(ErrorKind::Usage, given.string() + ": no such file or directory");
  const fs::path path = checkpoint_part(given);  // an svd-init / lq-decompose output root
  Checkpoint c;
  c.path_ = path;
  fs::path index_path;
  std::vector<fs::path> weight_files;
  if (fs::is_directory(path, ec)) {
    c.dir_ = path;
    std::vector<fs::path> indexes, weights, others, torch_indexes, torch_weights;
    for (const auto& e : fs::directory_iterator(path)) {
      if (!e.is_regular_file()) continue;
      const std::string n = e.path().filename().string();
      if (is_index_name(n))
        indexes.push_back(e.path());
      else if (is_weights_name(n))
        weights.push_back(e.path());
      else if (is_torch_index_name(n))
        torch_indexes.push_back(e.path());
      else if (is_torch_weights_name(n))
        torch_weights.push_back(e.path());
      else if (!is_foreign_weights_name(n))
        others.push_back(e.path());
    }
    // As transformers does: safetensors first, PyTorch's files when there are none. The other
    // format's files are never copied into an output (they would shadow the new weights).
    if (indexes.empty() && weights.empty()) {
      indexes = torch_indexes;
      weights = torch_weights;
    }
    std::sort(indexes.begin(), indexes.end());
    std::sort(weights.begin(), weights.end());
    std::sort(others.begin(), others.end());
    c.extra_files_ = others;
    if (!indexes.empty()) {
      index_path = indexes.front();
      for (const auto& i : indexes)
        if (strip_zst(i.filename().string()) == "model.safetensors.index.json" ||
            strip_zst(i.filename().string()) == "pytorch_model.bin.index.json")
          index_path = i;
    } else if (weights.size() == 1) {
      weight_files = weights;
    } else if (weights.empty()) {
      fail(ErrorKind::Usage,
           path.string() + ": directory holds no .safetensors or pytorch_model.bin weights");
    } else {
      for (const auto& w : weights)
        if (strip_zst(w.filename().string()) == "model.safetensors" ||
            strip_zst(w.filename().string()) == "pytorch_model.bin")
          weight_files = {w};
      if (weight_files.empty())
        fail(ErrorKind::Usage,
             path.string() + ": several .safetensors files and no index.json; name one file");
    }
  } else {
    c.dir_ = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    if (is_index_name(path.filename().string()) || is_torch_index_name(path.filename().string()))
      index_path = path;
    else
      weight_files = {path};
  }
  c.config_ = read_config(c.dir_);

  std::vector<std::pair<std::string, std::string>> weight_map;
  if (!index_path.empty()) {
    c.sharded_ = true;
    const std::string iname = index_path.string();
    weight_map = parse_index_json(read_input_text(index_path), iname);
    std::set<std::string> names;
    for (const auto& [t, s] : weight_map)
      names.insert(s);
    for (const auto& s : names)
      weight_files.push_back(resolve_shard(c.dir_, s, iname));
  }
  for (const auto& wf : weight_files) {
    Shard s;
    s.path = wf;
    s.file = FileBytes::open(wf);
    read_shard(s);
    if (is_lossless_archive(s.header)) {
      // A `quantize --scheme lossless` archive: decode it into memory like a .zst file.
      s.file = FileBytes::from_memory(decode_lossless_file(s.file->bytes(), s.header, wf.string()),
                                      wf.string());
      s.header = parse_safetensors(s.file->bytes(), wf.string());
    }
    c.shards_.push_back(std::move(s));
  }
  std::size_t total = 0;
  for (const auto& sh : c.shards_)
    total += sh.header.tensors.size();
  c.tensors_.reserve(total);
  c.by_name_.reserve(total);
  for (std::size_t i = 0; i < c.shards_.size(); ++i) {
    for (const auto& t : c.shards_[i].header.tensors) {
      const auto [at, fresh] = c.by_name_.try_emplace(t.name, c.tensors_.size());
      if (!fresh)
        fail(ErrorKind::Format, located(c.shards_[i].path.string(), t.name,
                                        "also present in " + c.file_of(c.tensors_[at->second])));
      c.tensors_.push_back({t, i});
    }
  }
  if (!index_path.empty()) {
    for (const auto& [tensor, shard] : weight_map) {
      const auto* t = c.find(tensor);
      const std::string expect = strip_zst(shard);
      if (!t || strip_zst(c.shards_[t->shard].path.filename().string()) != expect)
        fail(ErrorKind::Format,
             located(index_path.string(), tensor,
                     "index places it in '" + shard + "', which does not hold it"));
    }
    if (weight_map.size() != c.tensors_.size())
      fail(ErrorKind::Format,
           index_path.string() + ": weight_map lists " + std::to_string(weight_map.size()) +
               " tensors but the shards hold " + std::to_string(c.tensors_.size()));
  }
  return c;
}

const CheckpointTensor* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

TensorView Checkpoint::view(const CheckpointTensor& t) const {
  const Shard& s = shards_[t.shard];
  auto bytes = s.file->bytes().subspan(s.header.data_start + t.info.begin, t.info.nbytes());
  return {t.info.name, t.info.dtype, t.info.shape, bytes};
}

void Checkpoint::release(const CheckpointTensor& t) const {
  const Shard& s = shards_[t.shard];
  s.file->release(s.header.data_start + t.info.begin, t.info.nbytes());
}

const Metadata& Checkpoint::metadata() const {
  static const Metadata kEmpty;
  return shards_.empty() ? kEmpty : shards_.front().header.metadata;
}

std::uint64_t Checkpoint::total_bytes() const {
  std::uint64_t n = 0;
  for (const auto& t : tensors_)
    n += t.info.nbytes();
  return n;
}

}  // namespace ckpt
