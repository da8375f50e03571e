#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/io/json_text.hpp"

#include <fstream>
#include <sstream>
#include <type_traits>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/writer.hpp"

namespace ckpt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kContraction =
    "W[row, col] = sum over r_1..r_{N-1} of T_1[0, i_1, j_1, r_1] * T_2[r_1, i_2, j_2, r_2] * ... "
    "* "
    "T_N[r_{N-1}, i_N, j_N, 0], row = row-major index of (i_1..i_N) over row_shape, col = "
    "row-major "
    "index of (j_1..j_N) over col_shape; W is [out_features, in_features] (transpose it for the "
    "stored weight when fan_in_fan_out); full weight = residual + W (TensorLy tt-matrix / mpo_lab "
    "layout)";

std::vector<std::int64_t> ints(const nlohmann::ordered_json& j, const std::string& file,
                               const std::string& what) {
  if (!j.is_array())
    fail(ErrorKind::Format, located(file, "", what + " must be an array of integers"));
  std::vector<std::int64_t> v;
  for (const auto& x : j) {
    if (!x.is_number_integer() || x.get<std::int64_t>() < 1)
      fail(ErrorKind::Format, located(file, "", what + " must hold positive integers"));
    v.push_back(x.get<std::int64_t>());
  }
  return v;
}

/// j[key] as T, or `fallback` when absent or null; Error(Format) naming the file when it has the
/// wrong type (nlohmann's own type_error would surface as an internal error; found while adding
/// fuzz_mpo_adapter).
template <class T>
T field_or(const nlohmann::ordered_json& j, const char* key, T fallback, const std::string& file) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  // Integers must be JSON integers: casting a huge float to int64 is undefined.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    if (!it->is_number_integer())
      fail(ErrorKind::Format,
           located(file, "", std::string("field '") + key + "' must be an integer"));
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(ErrorKind::Format,
         located(file, "", std::string("field '") + key + "' has the wrong type"));
  }
}

/// True when the factors multiply to a value that fits int64 (mpo_shape_problem multiplies them).
bool product_fits(const std::vector<std::int64_t>& v) {
  std::int64_t p = 1;
  for (auto x : v)
    if (__builtin_mul_overflow(p, x, &p)) return false;
  return true;
}

}  // namespace

std::vector<int> mpo_trainable_cores(std::size_t cores, const std::string& trainable) {
  std::vector<int> out;
  if (trainable == "all") {
    for (std::size_t k = 0; k < cores; ++k)
      out.push_back(static_cast<int>(k));
  } else if (trainable == "auxiliary") {
    if (cores < 2)
      fail(ErrorKind::Usage,
           "--trainable auxiliary freezes the central core: it needs at least 2 cores");
    for (std::size_t k = 0; k < cores; ++k)
      if (k != mpo_central_core(cores)) out.push_back(static_cast<int>(k));
  } else {
    fail(ErrorKind::Usage,
         "--trainable must be 'all' (DoTA) or 'auxiliary' (MPOP), not '" + trainable + "'");
  }
  return out;
}

std::string mpo_core_key(const std::string& module, std::size_t k) {
  return std::string(kPeftPrefix) + module + ".mpo_core." + std::to_string(k);
}

nlohmann::ordered_json mpo_config_json(const MpoAdapter& a) {
  nlohmann::ordered_json j;
  j["peft_type"] = kMpoPeftType;
  j["ckptkit_format"] = "mpo";
  j["format_version"] = kMpoFormatVersion;
  j["base_model_name_or_path"] = a.base_model_name_or_path;
  j["key_format"] = std::string(kPeftPrefix) + "{module}.mpo_core.{k}";
  j["core_layout"] = "[r_{k-1}, i_k, j_k, r_k], row-major, r_0 = r_N = 1";
  j["contraction"] = kContraction;
  j["fan_in_fan_out"] = a.fan_in_fan_out;
  j["trainable"] = a.trainable;
  j["residual_quantization"] = a.residual_quantization.empty()
                                   ? nlohmann::ordered_json(nullptr)
                                   : nlohmann::ordered_json(a.residual_quantization);
  std::vector<std::string> names;
  for (const auto& m : a.modules)
    names.push_back(m.module);
  j["target_modules"] = names;
  nlohmann::ordered_json mods = nlohmann::ordered_json::object();
  for (const auto& m : a.modules) {
    std::vector<std::int64_t> bonds{1};
    for (const auto& c : m.cores)
      bonds.push_back(c.r_right);
    mods[m.module] = {{"shape", {m.rows, m.cols}},
                      {"row_shape", m.shape.row},
                      {"col_shape", m.shape.col},
                      {"bonds", bonds},
                      {"central_core", mpo_central_core(m.cores.size())},
                      {"trainable_cores", m.trainable_cores}};
  }
  j["modules"] = mods;
  return j;
}

void write_mpo_adapter(const fs::path& dir, const MpoAdapter& a, DType dtype) {
  std::vector<OwnedTensor> tensors;
  for (const auto& m : a.modules)
    for (std::size_t k = 0; k < m.cores.size(); ++k) {
      const auto& c = m.cores[k];
      tensors.push_back(
          make_tensor(mpo_core_key(m.module, k), dtype, {c.r_left, c.i, c.j, c.r_right}, c.data));
    }
  write_safetensors_file(dir / "adapter_model.safetensors", tensors,
                         {{"format", "pt"},
                          {"ckptkit_format", "mpo"},
                          {"format_version", std::to_string(kMpoFormatVersion)}});
  write_text_file(dir / "adapter_config.json", mpo_config_json(a).dump(2) + "\n");
}

bool is_mpo_adapter(const fs::path& dir) {
  const fs::path p = dir / "adapter_config.json";
  if (!fs::exists(p)) return false;
  const auto j = read_json_file(p);
  return j.is_object() && j.contains("ckptkit_format") && j["ckptkit_format"] == "mpo";
}

MpoAdapter read_mpo_adapter(const fs::path& dir) {
  const fs::path cfg_path = dir / "adapter_config.json";
  const std::string cfg_file = cfg_path.string();
  const auto j = read_ordered_json_file(cfg_path);
  if (!j.is_object()) fail(ErrorKind::Format, located(cfg_file, "", "not a JSON object"));
  if (field_or<std::string>(j, "ckptkit_format", "", cfg_file) != "mpo")
    fail(ErrorKind::Format,
         located(cfg_file, "", "not an MPO adapter (ckptkit_format is not \"mpo\")"));
  const auto version = field_or<std::int64_t>(j, "format_version", 0, cfg_file);
  if (version < 1)
    fail(ErrorKind::Format, located(cfg_file, "", "missing or invalid format_version"));
  if (version > kMpoFormatVersion)
    fail(ErrorKind::Unsupported, located(cfg_file, "",
                                         "MPO format version " + std::to_string(version) +
                                             " is newer than this ckptkit reads (" +
                                             std::to_string(kMpoFormatVersion) + ")"));
  MpoAdapter a;
  a.base_model_name_or_path = field_or<std::string>(j, "base_model_name_or_path", "", cfg_file);
  a.trainable = field_or<std::string>(j, "trainable", "all", cfg_file);
  a.fan_in_fan_out = field_or<bool>(j, "fan_in_fan_out", false, cfg_file);
  if (j.contains("residual_quantization") && j["residual_quantization"].is_string())
    a.residual_quantization = j["residual_quantization"].get<std::string>();
  if (!j.contains("modules") || !j["modules"].is_object())
    fail(ErrorKind::Format, located(cfg_file, "", "missing \"modules\" object"));

  const Checkpoint ck = Checkpoint::open(dir / "adapter_model.safetensors");
  for (const auto& [name, mj] : j["modules"].items()) {
    MpoModule m;
    m.module = name;
    const std::string what = "module '" + name + "'";
    if (!mj.is_object())
      fail(ErrorKind::Format, located(cfg_file, "", what + " must be an object"));
    m.shape.row =
        ints(mj.value("row_shape", nlohmann::ordered_json()), cfg_file, what + " row_shape");
    m.shape.col =
        ints(mj.value("col_shape", nlohmann::ordered_json()), cfg_file, what + " col_shape");
    const auto shape = ints(mj.value("shape", nlohmann::ordered_json()), cfg_file, what + " shape");
    const auto bonds = ints(mj.value("bonds", nlohmann::ordered_json()), cfg_file, what + " bonds");
    if (shape.size() != 2)
      fail(ErrorKind::Format, located(cfg_file, "", what + ": shape must be [out, in]"));
    m.rows = shape[0];
    m.cols = shape[1];
    if (!product_fits(m.shape.row) || !product_fits(m.shape.col) || !product_fits(shape))
      fail(ErrorKind::Format, located(cfg_file, "", what + ": shape factors overflow"));
    if (const auto p = mpo_shape_problem(m.shape, m.rows, m.cols); !p.empty())
      fail(ErrorKind::Format, located(cfg_file, "", what + ": " + p));
    const std::size_t n = m.shape.cores();
    if (bonds.size() != n + 1 || bonds.front() != 1 || bonds.back() != 1)
      fail(ErrorKind::Format,
           located(cfg_file, "", what + ": bonds must be [1, r_1, ..., r_{N-1}, 1]"));
    for (const auto& t : mj.value("trainable_cores", nlohmann::ordered_json::array())) {
      if (!t.is_number_integer() || t.get<int>() < 0 || t.get<std::size_t>() >= n)
        fail(ErrorKind::Format, located(cfg_file, "", what + ": trainable_cores out of range"));
      m.trainable_cores.push_back(t.get<int>());
    }
    for (std::size_t k = 0; k < n; ++k) {
      const std::string key = mpo_core_key(name, k);
      const CheckpointTensor* t = ck.find(key);
      if (!t) fail(ErrorKind::Format, located(ck.path().string(), key, "missing core"));
      const Shape want{bonds[k], m.shape.row[k], m.shape.col[k], bonds[k + 1]};
      if (t->info.shape != want)
        fail(ErrorKind::Format, located(ck.path().string(), key,
                                        "shape " + shape_str(t->info.shape) +
                                            " does not match the config's " + shape_str(want)));
      m.cores.push_back({want[0], want[1], want[2], want[3], to_f32(ck.view(*t))});
    }
    a.modules.push_back(std::move(m));
  }
  return a;
}

std::vector<float> mpo_module_delta(const MpoModule& m, bool fan_in_fan_out) {
  std::vector<float> d = mpo_contract(m.shape, m.cores);
  if (!fan_in_fan_out) return d;
  std::vector<float> t(d.size());
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c)
      t[c * m.rows + r] = d[r * m.cols + c];
  return t;
}

}  // namespace ckpt
