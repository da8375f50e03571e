#include "ckptkit/adapters/lora_read.hpp"

#include <Eigen/Core>
#include <climits>
#include <map>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"

namespace ckpt {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

namespace {

/// The first existing file among `name` and `name.zst` in `dir`, or empty.
fs::path find_file(const fs::path& dir, const std::string& name) {
  for (const std::string& n : {name, name + ".zst"})
    if (fs::is_regular_file(dir / n)) return dir / n;
  return {};
}

[[noreturn]] void bad_field(const std::string& file, const std::string& key,
                            const std::string& want) {
  fail(ErrorKind::Format, located(file, "", "field '" + key + "' must be " + want));
}

/// Which half of a LoRA pair a tensor key is, and the module it belongs to.
struct KeyPart {
  std::string module;
  char side = 0;  // 'A' or 'B'
  bool embedding = false;
};

bool split_key(const std::string& key, KeyPart& out) {
  std::string k = key;
  if (k.rfind(kPeftPrefix, 0) == 0) k = k.substr(std::string(kPeftPrefix).size());
  static const std::pair<const char*, KeyPart> kSuffixes[] = {
      {".lora_A.weight", {"", 'A', false}},
      {".lora_B.weight", {"", 'B', false}},
      {".lora_embedding_A", {"", 'A', true}},
      {".lora_embedding_B", {"", 'B', true}},
  };
  for (const auto& [suffix, part] : kSuffixes) {
    if (k.ends_with(suffix)) {
      out = part;
      out.module = k.substr(0, k.size() - std::string(suffix).size());
      return !out.module.empty();
    }
  }
  return false;
}

}  // namespace

LoraConfig parse_lora_config(const std::string& text, const std::string& file) {
  OJson j;
  try {
    j = OJson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, located(file, "", std::string("not valid JSON: ") + e.what()));
  }
  if (!j.is_object()) fail(ErrorKind::Format, located(file, "", "not a JSON object"));
  if (!j.contains("peft_type") || !j["peft_type"].is_string())
    fail(ErrorKind::Format, located(file, "", "no peft_type: not a PEFT adapter config"));
  if (j["peft_type"] != "LORA")
    fail(ErrorKind::Unsupported,
         located(file, "", "peft_type '" + j["peft_type"].get<std::string>() + "' is not LORA"));
  LoraConfig c;
  for (const auto& [key, v] : j.items()) {
    if (key == "r") {
      // Bounded by int: a larger r would wrap in get<int>() (to 0 for 2^32: alpha / r = inf).
      if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > INT_MAX)
        bad_field(file, key, "a positive integer");
      c.r = v.get<int>();
    } else if (key == "lora_alpha") {
      if (!v.is_number()) bad_field(file, key, "a number");
      c.lora_alpha = v.get<double>();
    } else if (key == "use_rslora" || key == "fan_in_fan_out") {
      if (v.is_null()) continue;
      if (!v.is_boolean()) bad_field(file, key, "true or false");
      (key == "use_rslora" ? c.use_rslora : c.fan_in_fan_out) = v.get<bool>();
    } else if (key == "target_modules") {
      if (v.is_string())
        c.target_modules = {v.get<std::string>()};
      else if (v.is_array()) {
        for (const auto& t : v) {
          if (!t.is_string()) bad_field(file, key, "a list of strings, a string or null");
          c.target_modules.push_back(t.get<std::string>());
        }
      } else if (!v.is_null())
        bad_field(file, key, "a list of strings, a string or null");
    } else if (key == "rank_pattern") {
      if (v.is_null()) continue;
      if (!v.is_object()) bad_field(file, key, "an object");
      for (const auto& [pk, pv] : v.items()) {
        if (!pv.is_number_integer() || pv.get<long long>() <= 0 || pv.get<long long>() > INT_MAX)
          bad_field(file, key + "." + pk, "a positive integer");
        c.rank_pattern.emplace_back(pk, pv.get<int>());
      }
    } else if (key == "alpha_pattern") {
      if (v.is_null()) continue;
      if (!v.is_object()) bad_field(file, key, "an object");
      for (const auto& [pk, pv] : v.items()) {
        if (!pv.is_number()) bad_field(file, key + "." + pk, "a number");
        c.alpha_pattern.emplace_back(pk, pv.get<double>());
      }
    } else if (key == "base_model_name_or_path") {
      if (v.is_string()) c.base_model_name_or_path = v.get<std::string>();
      c.extra[key] = v;  // written back as read (null stays null)
    } else if (key == "use_dora" && v.is_boolean() && v.get<bool>()) {
      fail(ErrorKind::Unsupported,
           located(file, "", "DoRA adapters (use_dora: true) are not supported"));
    } else {
      c.extra[key] = v;
    }
  }
  return c;
}

LoraAdapter read_lora_adapter(const fs::path& path) {
  LoraAdapter a;
  a.dir = fs::is_directory(path) ? path : path.parent_path();
  const fs::path cfg = find_file(a.dir, "adapter_config.json");
  if (cfg.empty())
    fail(ErrorKind::Usage,
         located(a.dir.string(), "", "no adapter_config.json: not a PEFT adapter directory"));
  a.weights = find_file(a.dir, "adapter_model.safetensors");
  if (a.weights.empty())
    fail(ErrorKind::Usage,
         located(a.dir.string(), "",
                 "no adapter_model.safetensors (adapter_model.bin is not supported)"));
  {
    const auto bytes = FileBytes::open(cfg);
    const auto span = bytes->bytes();
    a.config = parse_lora_config(
        std::string(reinterpret_cast<const char*>(span.data()), span.size()), cfg.string());
  }
  const Checkpoint ckpt = Checkpoint::open(a.weights);
  const std::string file = a.weights.string();

  struct Pair {
    const CheckpointTensor* A = nullptr;
    const CheckpointTensor* B = nullptr;
    bool embedding = false;
  };
  std::vector<std::string> order;
  std::map<std::string, Pair> pairs;
  for (const auto& t : ckpt.tensors()) {
    const std::string& name = t.info.name;
    KeyPart part;
    if (!split_key(name, part)) {
      if (name.ends_with("lora_magnitude_vector") || name.ends_with("lora_magnitude_vector.weight"))
        fail(ErrorKind::Unsupported,
             located(file, name, "DoRA magnitude vectors are not supported"));
      if (name.ends_with(".lora_B.bias"))
        fail(ErrorKind::Unsupported,
             located(file, name, "LoRA biases (lora_bias) are not supported"));
      fail(ErrorKind::Unsupported, located(file, name,
                                           "not a lora_A/lora_B tensor (modules_to_save and other "
                                           "PEFT types are not supported)"));
    }
    auto [it, fresh] = pairs.try_emplace(part.module);
    if (fresh) order.push_back(part.module);
    Pair& p = it->second;
    if (!fresh && p.embedding != part.embedding)
      fail(ErrorKind::Format, located(file, name, "mixes lora_embedding and lora_A/B tensors"));
    p.embedding = part.embedding;
    const CheckpointTensor*& slot = part.side == 'A' ? p.A : p.B;
    if (slot) fail(ErrorKind::Format, located(file, name, "duplicate LoRA tensor for this module"));
    slot = &t;
  }
  if (order.empty()) fail(ErrorKind::Format, located(file, "", "holds no LoRA tensors"));

  for (const auto& module : order) {
    const Pair& p = pairs[module];
    if (!p.A || !p.B)
      fail(ErrorKind::Format, located(file, module,
                                      std::string("has lora_") + (p.A ? "A" : "B") +
                                          " but no lora_" + (p.A ? "B" : "A")));
    const Shape& sa = p.A->info.shape;
    const Shape& sb = p.B->info.shape;
    if (sa.size() != 2 || sb.size() != 2)
      fail(ErrorKind::Format,
           located(file, p.A->info.name,
                   "LoRA factors must be 2-D, got A " + shape_str(sa) + " and B " + shape_str(sb)));
    if (!is_float(p.A->info.dtype) || !is_float(p.B->info.dtype))
      fail(ErrorKind::Format, located(file, p.A->info.name, "LoRA factors must be floating point"));
    LoraModule m;
    m.module = module;
    m.embedding = p.embedding;
    m.rank = static_cast<int>(sa[0]);
    m.in = sa[1];
    m.out = sb[0];
    if (sb[1] != sa[0])
      fail(ErrorKind::Format,
           located(file, p.B->info.name,
                   "rank mismatch: A " + shape_str(sa) + " vs B " + shape_str(sb)));
    const int want = a.config.rank_alpha_for(module).first;
    if (m.rank != want)
      fail(ErrorKind::Format,
           located(file, p.A->info.name,
                   "rank " + std::to_string(m.rank) + " but adapter_config.json says " +
                       std::to_string(want) + " (r / rank_pattern)"));
    m.A = to_f32(ckpt.view(*p.A));
    m.B = to_f32(ckpt.view(*p.B));
    a.modules.push_back(std::move(m));
  }
  return a;
}

std::string lora_base_tensor(const LoraModule& m) {
  return m.module + ".weight";
}

std::vector<std::int64_t> lora_delta_shape(const LoraModule& m, bool fan_in_fan_out) {
  // Embeddings: (B·A)ᵀ is [num_embeddings, dim] = [in, out]; Conv1D: [in, out] too.
  if (m.embedding || fan_in_fan_out) return {m.in, m.out};
  return {m.out, m.in};
}

std::vector<float> lora_delta(const LoraAdapter& adapter, const LoraModule& m) {
  using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  const Eigen::Map<const RowF> A(m.A.data(), m.rank, m.in), B(m.B.data(), m.out, m.rank);
  const float s = static_cast<float>(adapter.config.scaling_for(m.module));
  std::vector<float> out(static_cast<std::size_t>(m.out * m.in));
  if (m.embedding || adapter.config.fan_in_fan_out)
    // Row-major [in, out] of (s·B·A)ᵀ is the column-major [out, in] of s·B·A.
    Eigen::Map<ColF>(out.data(), m.out, m.in).noalias() = s * (B * A);
  else
    Eigen::Map<RowF>(out.data(), m.out, m.in).noalias() = s * (B * A);
  return out;
}

void check_adapter_against(const LoraAdapter& adapter, const Checkpoint& base) {
  const std::string file = adapter.weights.string();
  for (const auto& m : adapter.modules) {
    const std::string name = lora_base_tensor(m);
    const CheckpointTensor* t = base.find(name);
    if (!t)
      fail(ErrorKind::Format, located(file, m.module,
                                      "no tensor '" + name + "' in the base checkpoint " +
                                          base.path().string() + ": adapter for another model?"));
    const Shape want = lora_delta_shape(m, adapter.config.fan_in_fan_out);
    if (t->info.shape != want)
      fail(ErrorKind::Format,
           located(file, m.module,
                   "delta shape " + shape_str(want) + " does not match base tensor '" + name +
                       "' " + shape_str(t->info.shape) + ": adapter for another model?"));
  }
}

}  // namespace ckpt
