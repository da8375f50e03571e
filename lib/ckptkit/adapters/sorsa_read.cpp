#include "ckptkit/adapters/sorsa_read.hpp"
#include "ckptkit/io/json_text.hpp"

#include <array>
#include <cmath>
#include <map>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"

namespace ckpt {

namespace fs = std::filesystem;

namespace {

fs::path config_path(const fs::path& dir) {
  for (const char* n : {"adapter_config.json", "adapter_config.json.zst"})
    if (fs::is_regular_file(dir / n)) return dir / n;
  return {};
}

}  // namespace

bool is_sorsa_adapter(const fs::path& dir) {
  const fs::path p = config_path(dir);
  if (p.empty()) return false;
  const auto j = read_json_file(p);
  return j.is_object() && j.contains("ckptkit_format") && j["ckptkit_format"] == "sorsa";
}

SorsaAdapter read_sorsa_adapter(const fs::path& path) {
  SorsaAdapter a;
  a.dir = fs::is_directory(path) ? path : path.parent_path();
  const fs::path cfg = config_path(a.dir);
  if (cfg.empty()) fail(ErrorKind::Usage, located(a.dir.string(), "", "no adapter_config.json"));
  const std::string cfg_file = cfg.string();
  auto j = read_ordered_json_file(cfg);
  if (!j.is_object()) fail(ErrorKind::Format, located(cfg_file, "", "not a JSON object"));
  if (!j.contains("ckptkit_format") || j["ckptkit_format"] != "sorsa")
    fail(ErrorKind::Format, located(cfg_file, "", "not a SORSA adapter (ckptkit_format)"));
  if (!j.contains("format_version") || !j["format_version"].is_number_integer() ||
      j["format_version"].get<int>() < 1)
    fail(ErrorKind::Format, located(cfg_file, "", "missing or invalid format_version"));
  const int version = j["format_version"].get<int>();
  if (version > kSorsaFormatVersion)
    fail(ErrorKind::Unsupported, located(cfg_file, "",
                                         "SORSA format version " + std::to_string(version) +
                                             " is newer than this ckptkit reads (" +
                                             std::to_string(kSorsaFormatVersion) + ")"));
  // The numeric fields are LoRA's with "alpha" for "lora_alpha": reuse the PEFT parser.
  nlohmann::ordered_json lj = nlohmann::ordered_json::object();
  lj["peft_type"] = "LORA";
  for (const char* k : {"r", "use_rslora", "fan_in_fan_out", "target_modules", "rank_pattern",
                        "alpha_pattern", "base_model_name_or_path"})
    if (j.contains(k)) lj[k] = j[k];
  // SORSA's default (alpha absent or null) is scaling 1, i.e. alpha = r.
  if (j.contains("alpha") && !j["alpha"].is_null())
    lj["lora_alpha"] = j["alpha"];
  else
    lj["lora_alpha"] = lj.contains("r") ? lj["r"] : nlohmann::ordered_json(8);
  a.config = parse_lora_config(lj.dump(), cfg_file);

  for (const char* n : {"adapter_model.safetensors", "adapter_model.safetensors.zst"})
    if (fs::is_regular_file(a.dir / n)) {
      a.weights = a.dir / n;
      break;
    }
  if (a.weights.empty())
    fail(ErrorKind::Usage, located(a.dir.string(), "", "no adapter_model.safetensors"));
  const Checkpoint ck = Checkpoint::open(a.weights);
  const std::string file = a.weights.string();
  std::vector<std::string> order;
  std::map<std::string, std::array<const CheckpointTensor*, 3>> parts;  // A, S, B
  for (const auto& t : ck.tensors()) {
    std::string k = t.info.name;
    if (k.rfind(kPeftPrefix, 0) == 0) k = k.substr(std::string(kPeftPrefix).size());
    int slot = -1;
    for (int s = 0; s < 3; ++s)
      if (k.ends_with(std::string(".sorsa_") + "ASB"[s])) slot = s;
    if (slot < 0) fail(ErrorKind::Format, located(file, t.info.name, "not a sorsa_A/S/B tensor"));
    const std::string module = k.substr(0, k.size() - 8);
    auto [it, fresh] = parts.try_emplace(module, std::array<const CheckpointTensor*, 3>{});
    if (fresh) order.push_back(module);
    if (it->second[slot])
      fail(ErrorKind::Format, located(file, t.info.name, "duplicate SORSA tensor"));
    it->second[slot] = &t;
  }
  if (order.empty()) fail(ErrorKind::Format, located(file, "", "holds no SORSA tensors"));
  for (const auto& module : order) {
    const auto& p = parts[module];
    for (int s = 0; s < 3; ++s)
      if (!p[s])
        fail(ErrorKind::Format,
             located(file, module, std::string("missing sorsa_") + "ASB"[s] + " for this module"));
    const Shape &sa = p[0]->info.shape, &ss = p[1]->info.shape, &sb = p[2]->info.shape;
    for (int s = 0; s < 3; ++s)
      if (!is_float(p[s]->info.dtype))
        fail(ErrorKind::Format, located(file, p[s]->info.name, "not a float tensor"));
    if (sa.size() != 2 || ss.size() != 1 || sb.size() != 2 || ss[0] != sa[0] || sb[1] != sa[0])
      fail(ErrorKind::Format,
           located(file, module,
                   "inconsistent shapes A " + shape_str(sa) + ", S " + shape_str(ss) + ", B " +
                       shape_str(sb) + " (want [r, in], [r], [out, r])"));
    SorsaModule m;
    m.module = module;
    m.rank = static_cast<int>(sa[0]);
    m.in = sa[1];
    m.out = sb[0];
    const int want = a.config.rank_alpha_for(module).first;
    if (m.rank != want)
      fail(ErrorKind::Format,
           located(file, p[0]->info.name,
                   "rank " + std::to_string(m.rank) + " but adapter_config.json says " +
                       std::to_string(want) + " (r / rank_pattern)"));
    m.A = to_f32(ck.view(*p[0]));
    m.S = to_f32(ck.view(*p[1]));
    m.B = to_f32(ck.view(*p[2]));
    a.modules.push_back(std::move(m));
  }
  return a;
}

LoraAdapter sorsa_as_lora(const SorsaAdapter& s) {
  LoraAdapter a;
  a.dir = s.dir;
  a.weights = s.weights;
  a.config = s.config;
  for (const auto& m : s.modules) {
    LoraModule l;
    l.module = m.module;
    l.rank = m.rank;
    l.in = m.in;
    l.out = m.out;
    l.A = m.A;
    l.B = m.B;
    for (int k = 0; k < m.rank; ++k) {
      // √S on both sides, as PEFT splits PiSSA's singular values (S >= 0 by construction;
      // a negative entry keeps its sign on A so the product stays exact).
      const float sv = m.S[k];
      const float root = std::sqrt(std::fabs(sv));
      for (std::int64_t c = 0; c < m.in; ++c)
        l.A[k * m.in + c] *= sv < 0 ? -root : root;
      for (std::int64_t r = 0; r < m.out; ++r)
        l.B[r * m.rank + k] *= root;
    }
    a.modules.push_back(std::move(l));
  }
  return a;
}

}  // namespace ckpt
