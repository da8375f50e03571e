#include "ckptkit/adapters/any_adapter.hpp"
#include "ckptkit/io/output_layout.hpp"

#include <Eigen/Core>
#include <map>

#include "ckptkit/adapters/base_match.hpp"
#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/sorsa_read.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/targets.hpp"

namespace ckpt {

namespace fs = std::filesystem;

namespace {

using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Storage-layout factors of a LoRA-shaped module (A [r, in], B [out, r]).
AdapterDelta factored(const std::string& module, int rank, std::int64_t in, std::int64_t out,
                      const std::vector<float>& A, const std::vector<float>& B, double scale,
                      bool transposed) {
  AdapterDelta d;
  d.module = module;
  d.base_tensor = module + ".weight";
  d.rank = rank;
  d.scale = scale;
  d.transposed = transposed;
  if (!transposed) {
    d.rows = out;
    d.cols = in;
    d.L = B;
    d.R = A;
  } else {
    // Stored [in, out]: ΔWᵀ = s·Aᵀ·Bᵀ.
    d.rows = in;
    d.cols = out;
    d.L.resize(A.size());
    d.R.resize(B.size());
    Eigen::Map<RowF>(d.L.data(), in, rank) = Eigen::Map<const RowF>(A.data(), rank, in).transpose();
    Eigen::Map<RowF>(d.R.data(), rank, out) =
        Eigen::Map<const RowF>(B.data(), out, rank).transpose();
  }
  return d;
}

/// Every rank_pattern / alpha_pattern key must adapt something (PEFT silently ignores a key that
/// matches nothing; for merge that means the adapter was written for another model).
void check_patterns(const LoraConfig& c, const std::vector<std::string>& modules,
                    const std::string& cfg_file) {
  auto check = [&](const std::string& key, const char* field) {
    for (const auto& m : modules)
      if (peft_pattern_matches(key, m)) return;
    fail(ErrorKind::Format,
         located(cfg_file, key,
                 std::string(field) + " key matches no module of the adapter: written for "
                                      "another model?"));
  };
  for (const auto& [k, v] : c.rank_pattern)
    check(k, "rank_pattern");
  for (const auto& [k, v] : c.alpha_pattern)
    check(k, "alpha_pattern");
}

fs::path config_of(const fs::path& dir) {
  for (const char* n : {"adapter_config.json", "adapter_config.json.zst"})
    if (fs::is_regular_file(dir / n)) return dir / n;
  return dir / "adapter_config.json";
}

}  // namespace

std::string adapter_format_name(AdapterFormat f) {
  switch (f) {
    case AdapterFormat::Lora:
      return "lora";
    case AdapterFormat::Sorsa:
      return "sorsa";
    case AdapterFormat::Mpo:
      return "mpo";
  }
  return "?";
}

AnyAdapter read_any_adapter(const fs::path& given) {
  const fs::path path = adapter_part(given);  // an output root: its adapter/
  const fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  if (!fs::exists(path))
    fail(ErrorKind::Usage, located(path.string(), "", "no such adapter directory"));
  AnyAdapter a;
  a.dir = dir;
  a.config = config_of(dir);
  if (is_mpo_adapter(dir)) {
    a.format = AdapterFormat::Mpo;
    a.mpo = read_mpo_adapter(dir);
    a.weights = dir / "adapter_model.safetensors";
    a.base_model_name_or_path = a.mpo.base_model_name_or_path;
    for (const auto& m : a.mpo.modules) {
      AdapterDelta d;
      d.module = m.module;
      d.base_tensor = m.module + ".weight";
      d.rows = a.mpo.fan_in_fan_out ? m.cols : m.rows;
      d.cols = a.mpo.fan_in_fan_out ? m.rows : m.cols;
      a.modules.push_back(std::move(d));
    }
    return a;
  }
  if (is_sorsa_adapter(dir)) {
    a.format = AdapterFormat::Sorsa;
    const SorsaAdapter s = read_sorsa_adapter(dir);
    a.weights = s.weights;
    a.base_model_name_or_path = s.config.base_model_name_or_path;
    std::vector<std::string> names;
    for (const auto& m : s.modules) {
      names.push_back(m.module);
      // L = sorsa_B·diag(S) keeps A orthonormal rows untouched; one f32 rounding per entry.
      std::vector<float> BS = m.B;
      for (std::int64_t r = 0; r < m.out; ++r)
        for (int k = 0; k < m.rank; ++k)
          BS[r * m.rank + k] *= m.S[k];
      a.modules.push_back(factored(m.module, m.rank, m.in, m.out, m.A, BS,
                                   s.config.scaling_for(m.module), s.config.fan_in_fan_out));
    }
    check_patterns(s.config, names, a.config.string());
    return a;
  }
  const LoraAdapter l = read_lora_adapter(dir);
  a.format = AdapterFormat::Lora;
  a.weights = l.weights;
  a.base_model_name_or_path = l.config.base_model_name_or_path;
  std::vector<std::string> names;
  for (const auto& m : l.modules) {
    names.push_back(m.module);
    a.modules.push_back(factored(m.module, m.rank, m.in, m.out, m.A, m.B,
                                 l.config.scaling_for(m.module), m.transposed));
    a.modules.back().embedding = m.embedding;
    a.modules.back().magnitude = m.magnitude;
  }
  a.saved = l.saved;
  a.notes = l.notes;
  check_patterns(l.config, names, a.config.string());
  return a;
}

namespace {

/// ΔWᵀ = s·Rᵀ·Lᵀ: the same factors, for the other storage orientation.
void flip(AdapterDelta& d) {
  std::vector<float> L(d.R.size()), R(d.L.size());
  Eigen::Map<RowF>(L.data(), d.cols, d.rank) =
      Eigen::Map<const RowF>(d.R.data(), d.rank, d.cols).transpose();
  Eigen::Map<RowF>(R.data(), d.rank, d.rows) =
      Eigen::Map<const RowF>(d.L.data(), d.rows, d.rank).transpose();
  d.L = std::move(L);
  d.R = std::move(R);
  std::swap(d.rows, d.cols);
  d.transposed = !d.transposed;
}

}  // namespace

void resolve_any_adapter(
    AnyAdapter& a, const Checkpoint& base, const ModuleNaming& naming,
    const std::vector<std::pair<std::string, std::vector<std::int64_t>>>* logical_shapes) {
  const std::string file = a.weights.string();
  LogicalShapes logical;
  if (logical_shapes)
    for (const auto& [n, s] : *logical_shapes)
      logical[n] = s;
  for (auto& m : a.modules) {
    m.base_tensor = match_base_tensor(file, m.module, ".weight", base, naming, &logical);
    if (a.format == AdapterFormat::Lora && !m.embedding) {
      std::string note;
      const bool want = peft_transposed(naming, TargetSelector::module_name(m.base_tensor),
                                        m.transposed, m.module, &note);
      if (want != m.transposed) flip(m);
      if (!note.empty()) a.notes.push_back(note);
    }
    const auto it = logical.find(m.base_tensor);
    const CheckpointTensor* t = base.find(m.base_tensor);
    const Shape have = it != logical.end() ? it->second : t->info.shape;
    const Shape want{m.rows, m.cols};
    if (have != want)
      fail(ErrorKind::Format,
           located(file, m.module,
                   "delta shape " + shape_str(want) + " does not match base tensor '" +
                       m.base_tensor + "' " + shape_str(have) + ": adapter for another model?"));
  }
  a.saved_is_new.assign(a.saved.size(), false);
  for (std::size_t i = 0; i < a.saved.size(); ++i) {
    OwnedTensor& t = a.saved[i];
    const auto dot = t.name.rfind('.');
    const std::string module = dot == std::string::npos ? t.name : t.name.substr(0, dot);
    const std::string suffix = dot == std::string::npos ? "" : t.name.substr(dot);
    if (auto found = find_base_tensor(module, suffix, base, naming, &logical)) {
      const auto lit = logical.find(*found);
      const Shape have = lit != logical.end() ? lit->second : base.find(*found)->info.shape;
      if (have != t.shape)
        fail(ErrorKind::Format,
             located(file, t.name,
                     "saved module tensor " + shape_str(t.shape) + " does not match base tensor '" +
                         *found + "' " + shape_str(have) + ": adapter for another model?"));
      t.name = *found;
    } else {
      a.saved_is_new[i] = true;  // a new head (e.g. score of a classifier): added to the output
    }
  }
}

std::vector<float> any_adapter_dense(const AnyAdapter& a, std::size_t i) {
  if (a.format == AdapterFormat::Mpo)
    return mpo_module_delta(a.mpo.modules[i], a.mpo.fan_in_fan_out);
  const AdapterDelta& d = a.modules[i];
  std::vector<float> out(static_cast<std::size_t>(d.rows * d.cols));
  Eigen::Map<RowF>(out.data(), d.rows, d.cols).noalias() =
      static_cast<float>(d.scale) * (Eigen::Map<const RowF>(d.L.data(), d.rows, d.rank) *
                                     Eigen::Map<const RowF>(d.R.data(), d.rank, d.cols));
  return out;
}

}  // namespace ckpt
