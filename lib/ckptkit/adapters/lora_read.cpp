#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/io/json_text.hpp"
#include "ckptkit/io/output_layout.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <climits>
#include <map>

#include "ckptkit/adapters/base_match.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/targets.hpp"

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
  const OJson j = parse_ordered_json_text(text, file);
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
    } else if (key == "use_dora") {
      if (!v.is_null() && !v.is_boolean()) bad_field(file, key, "true or false");
      c.use_dora = v.is_boolean() && v.get<bool>();
      c.extra[key] = v;
    } else if (key == "layers_to_transform") {
      c.extra[key] = v;
      if (v.is_null()) continue;
      auto layer = [&](const OJson& x) {
        if (!x.is_number_integer() || x.get<long long>() < 0 || x.get<long long>() > INT_MAX)
          bad_field(file, "layers_to_transform", "a layer index or a list of them");
        c.layers_to_transform.push_back(x.get<int>());
      };
      if (v.is_array())
        for (const auto& x : v)
          layer(x);
      else
        layer(v);
    } else if (key == "layers_pattern") {
      c.extra[key] = v;
      if (v.is_string())
        c.layers_pattern = {v.get<std::string>()};
      else if (v.is_array())
        for (const auto& x : v) {
          if (!x.is_string()) bad_field(file, key, "a string, a list of strings or null");
          c.layers_pattern.push_back(x.get<std::string>());
        }
      else if (!v.is_null())
        bad_field(file, key, "a string, a list of strings or null");
    } else {
      c.extra[key] = v;
    }
  }
  return c;
}

namespace {

/// A tensor that is not a LoRA factor: a DoRA magnitude, or a full tensor PEFT saved. Returns
/// the module for a magnitude vector, fills `saved_name` for a saved tensor; refuses the rest.
std::string classify_other(const std::string& file, const std::string& key,
                           std::string& saved_name) {
  std::string k = key;
  if (k.rfind(kPeftPrefix, 0) == 0) k = k.substr(std::string(kPeftPrefix).size());
  for (const char* suffix : {".lora_magnitude_vector", ".lora_magnitude_vector.weight"})
    if (k.ends_with(suffix)) return k.substr(0, k.size() - std::string(suffix).size());
  if (k.ends_with(".lora_B.bias"))
    fail(ErrorKind::Unsupported, located(file, key, "LoRA biases (lora_bias) are not supported"));
  if (k.find("lora_") != std::string::npos || k.find("trainable_tokens_") != std::string::npos)
    fail(ErrorKind::Unsupported,
         located(file, key, "not a LoRA factor, DoRA magnitude or saved module tensor"));
  // ModulesToSaveWrapper's in-memory name, kept by some writers: "<m>.modules_to_save.<a>.<p>".
  if (const auto at = k.find(".modules_to_save."); at != std::string::npos) {
    const auto dot = k.find('.', at + 17);
    if (dot == std::string::npos)
      fail(ErrorKind::Format, located(file, key, "modules_to_save key without a parameter"));
    k = k.substr(0, at) + k.substr(dot);
  }
  saved_name = k;
  return {};
}

bool all_zero(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; });
}

}  // namespace

LoraAdapter read_lora_adapter(const fs::path& given) {
  const fs::path path = adapter_part(given);  // an output root: its adapter/
  LoraAdapter a;
  a.dir = fs::is_directory(path) ? path : path.parent_path();
  const fs::path cfg = find_file(a.dir, "adapter_config.json");
  if (cfg.empty())
    fail(ErrorKind::Usage,
         located(a.dir.string(), "", "no adapter_config.json: not a PEFT adapter directory"));
  // PEFT writes safetensors; older versions (and safe_serialization=False) adapter_model.bin,
  // read by the restricted torch reader (io/torch_bin.hpp).
  a.weights = find_file(a.dir, "adapter_model.safetensors");
  if (a.weights.empty()) a.weights = find_file(a.dir, "adapter_model.bin");
  if (a.weights.empty())
    fail(ErrorKind::Usage,
         located(a.dir.string(), "", "no adapter_model.safetensors or adapter_model.bin"));
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
    const CheckpointTensor* magnitude = nullptr;
    bool embedding = false;
  };
  std::vector<std::string> order;
  std::map<std::string, Pair> pairs;
  std::map<std::string, const CheckpointTensor*> magnitudes;
  for (const auto& t : ckpt.tensors()) {
    const std::string& name = t.info.name;
    KeyPart part;
    if (!split_key(name, part)) {
      std::string saved;
      const std::string dora_module = classify_other(file, name, saved);
      if (!dora_module.empty()) {
        if (!magnitudes.emplace(dora_module, &t).second)
          fail(ErrorKind::Format, located(file, name, "duplicate DoRA magnitude vector"));
        continue;
      }
      if (!is_float(t.info.dtype))
        fail(ErrorKind::Format, located(file, name, "saved module tensor is not floating point"));
      const TensorView v = ckpt.view(t);
      a.saved.push_back({saved, t.info.dtype, t.info.shape, {v.bytes.begin(), v.bytes.end()}});
      continue;
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
  if (order.empty() && a.saved.empty())
    fail(ErrorKind::Format, located(file, "", "holds no LoRA tensors"));
  for (const auto& [module, t] : magnitudes) {
    if (!pairs.count(module))
      fail(ErrorKind::Format, located(file, t->info.name, "DoRA magnitude without lora_A/lora_B"));
    if (!a.config.use_dora)
      fail(ErrorKind::Format, located(file, t->info.name,
                                      "DoRA magnitude vector but adapter_config.json has no "
                                      "use_dora: true"));
    pairs[module].magnitude = t;
  }

  std::size_t zero_b = 0;
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
    if (!a.config.layers_to_transform.empty()) {
      // PEFT creates no LoRA layer outside these layers: their tensors are never loaded.
      const auto layer = peft_layer_index(module, a.config.layers_pattern);
      const auto& keep = a.config.layers_to_transform;
      if (!layer || std::find(keep.begin(), keep.end(), *layer) == keep.end()) {
        a.notes.push_back(module + ": outside layers_to_transform, ignored as PEFT does");
        continue;
      }
    }
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
    if (a.config.use_dora) {
      if (!p.magnitude)
        fail(ErrorKind::Format,
             located(file, module, "use_dora is true but the module has no lora_magnitude_vector"));
      if (m.embedding)
        fail(ErrorKind::Unsupported,
             located(file, module, "DoRA on an embedding is not supported (linear layers only)"));
      if (p.magnitude->info.shape != Shape{m.out} && p.magnitude->info.shape != Shape{1, m.out})
        fail(ErrorKind::Format,
             located(file, p.magnitude->info.name,
                     "DoRA magnitude shape " + shape_str(p.magnitude->info.shape) + " but out is " +
                         std::to_string(m.out)));
      if (!is_float(p.magnitude->info.dtype))
        fail(ErrorKind::Format,
             located(file, p.magnitude->info.name, "DoRA magnitude must be floating point"));
      m.magnitude = to_f32(ckpt.view(*p.magnitude));
    }
    m.A = to_f32(ckpt.view(*p.A));
    m.B = to_f32(ckpt.view(*p.B));
    m.base_tensor = module + ".weight";
    m.transposed = m.embedding || a.config.fan_in_fan_out;
    if (all_zero(m.B) || all_zero(m.A)) ++zero_b;
    a.modules.push_back(std::move(m));
  }
  if (!a.modules.empty() && zero_b == a.modules.size() && !a.config.use_dora)
    a.notes.push_back(
        "every module has lora_B (or lora_A) all zero: the adapter changes nothing "
        "(PEFT's initial state, never trained?)");
  return a;
}

std::string lora_base_tensor(const LoraModule& m) {
  return m.base_tensor.empty() ? m.module + ".weight" : m.base_tensor;
}

std::vector<std::int64_t> lora_delta_shape(const LoraModule& m, bool transposed) {
  // Embeddings: (B·A)ᵀ is [num_embeddings, dim] = [in, out]; Conv1D: [in, out] too.
  if (m.embedding || transposed) return {m.in, m.out};
  return {m.out, m.in};
}

std::vector<float> lora_delta(const LoraAdapter& adapter, const LoraModule& m) {
  using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  const Eigen::Map<const RowF> A(m.A.data(), m.rank, m.in), B(m.B.data(), m.out, m.rank);
  const float s = static_cast<float>(adapter.config.scaling_for(m.module));
  std::vector<float> out(static_cast<std::size_t>(m.out * m.in));
  if (m.embedding || m.transposed)
    // Row-major [in, out] of (s·B·A)ᵀ is the column-major [out, in] of s·B·A.
    Eigen::Map<ColF>(out.data(), m.out, m.in).noalias() = s * (B * A);
  else
    Eigen::Map<RowF>(out.data(), m.out, m.in).noalias() = s * (B * A);
  return out;
}

void resolve_lora_adapter(LoraAdapter& adapter, const Checkpoint& base,
                          const ModuleNaming& naming) {
  const std::string file = adapter.weights.string();
  for (auto& m : adapter.modules) {
    m.base_tensor = match_base_tensor(file, m.module, ".weight", base, naming);
    if (!m.embedding) {
      std::string note;
      m.transposed = peft_transposed(naming, TargetSelector::module_name(m.base_tensor),
                                     adapter.config.fan_in_fan_out, m.module, &note);
      if (!note.empty()) adapter.notes.push_back(note);
    }
    const CheckpointTensor* t = base.find(m.base_tensor);
    const Shape want = lora_delta_shape(m, m.transposed);
    if (t->info.shape != want)
      fail(ErrorKind::Format,
           located(file, m.module,
                   "delta shape " + shape_str(want) + " does not match base tensor '" +
                       m.base_tensor + "' " + shape_str(t->info.shape) +
                       ": adapter for another model?"));
  }
}

}  // namespace ckpt
