#include "ckptkit/commands/export_gguf/export_gguf.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "ckptkit/adapters/any_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/formats/gguf_names.hpp"
#include "ckptkit/formats/quantized_base.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/output_dir.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

/// One module as llama.cpp will see it.
struct ExportedModule {
  const AdapterDelta* delta = nullptr;
  std::string tensor;      // GGUF base tensor, e.g. "blk.0.attn_q.weight"
  std::int64_t heads = 0;  // rows permuted with this many heads (0: none)
};

/// The adapter's LoRA deltas mapped to llama.cpp's tensors, checked before anything is written.
std::vector<ExportedModule> plan_modules(const AnyAdapter& a, const GgufArchitecture& arch) {
  if (a.format == AdapterFormat::Mpo)
    fail(ErrorKind::Usage, a.config.string() +
                               ": an MPO (DoTA) adapter has no lora_a/lora_b form llama.cpp loads; "
                               "merge it into the base instead (ckptkit merge)");
  if (!a.saved.empty())
    fail(ErrorKind::Usage,
         located(a.weights.string(), a.saved.front().name,
                 "a full tensor saved with the adapter (modules_to_save): llama.cpp adapters hold "
                 "only lora_a/lora_b; merge it into the base instead (ckptkit merge)"));
  std::vector<ExportedModule> out;
  std::map<std::string, std::string> seen;  // GGUF tensor -> module
  for (const auto& d : a.modules) {
    if (!d.magnitude.empty())
      fail(ErrorKind::Usage,
           located(a.weights.string(), d.module,
                   "a DoRA module: llama.cpp's LoRA has no magnitude vector; convert it with "
                   "ckptkit merge --to-lora BASE DORA -o OUT --rank R first"));
    const std::optional<std::string> name = gguf_tensor_name(d.base_tensor);
    if (!name)
      fail(ErrorKind::Usage,
           located(a.weights.string(), d.module,
                   "no llama.cpp tensor for this module (mapped: the embedding, lm_head and the "
                   "q/k/v/o and gate/up/down projections of each layer)"));
    if (arch.drops_lm_head && *name == "output.weight")
      fail(ErrorKind::Usage,
           located(a.weights.string(), d.module,
                   "lm_head is present in the adapter, but llama.cpp's " + arch.name +
                       " shares it with the embedding (its converter drops lm_head)"));
    if (d.transposed && !d.embedding)
      fail(ErrorKind::Usage, located(a.weights.string(), d.module,
                                     "stored [in, out] (Conv1D): not a llama-family layer"));
    if (!seen.emplace(*name, d.module).second)
      fail(ErrorKind::Usage,
           located(a.weights.string(), d.module, "maps to " + *name + " like " + seen[*name]));
    ExportedModule m{&d, *name, rope_permute_heads(arch, d.base_tensor)};
    if (m.heads > 0 && d.rows % (2 * m.heads) != 0)
      fail(ErrorKind::Usage,
           located(a.weights.string(), d.module,
                   std::to_string(d.rows) + " output rows do not split into " +
                       std::to_string(m.heads) + " heads of even size (config.json head counts?)"));
    out.push_back(m);
  }
  if (out.empty()) fail(ErrorKind::Usage, a.weights.string() + ": the adapter has no module");
  return out;
}

/// adapter.lora.alpha: llama.cpp scales each tensor by alpha / rank, so the most common
/// scale · rank among the modules leaves the most lora_b tensors as they are.
double global_alpha(const std::vector<ExportedModule>& modules) {
  std::map<double, int> count;
  for (const auto& m : modules)
    ++count[m.delta->scale * m.delta->rank];
  double best = 0;
  int best_n = 0;
  for (const auto& m : modules) {  // first in module order among the most common
    const double v = m.delta->scale * m.delta->rank;
    if (count[v] > best_n) best = v, best_n = count[v];
  }
  return best;
}

/// llama.cpp's Q8_0 needs whole blocks per row; its converter writes F16 for the rest.
gguf::TensorType storage_type(gguf::TensorType want, std::int64_t row_length) {
  return want == gguf::TensorType::Q8_0 && row_length % gguf::kQ8Block != 0 ? gguf::TensorType::F16
                                                                            : want;
}

}  // namespace

Json run_export_gguf(const ExportGgufOptions& o) {
  const auto start = Clock::now();
  if (o.alpha && !(*o.alpha > 0 && std::isfinite(*o.alpha)))
    fail(ErrorKind::Usage, "--alpha must be a positive number");
  AnyAdapter adapter = read_any_adapter(o.adapter);
  const Checkpoint base = Checkpoint::open(o.base);
  if (!base.config())
    fail(ErrorKind::Usage, o.base.string() +
                               ": no config.json; export-gguf reads the architecture and head "
                               "counts from it");
  const std::optional<GgufArchitecture> arch = gguf_architecture(*base.config());
  if (!arch)
    fail(ErrorKind::Usage, o.base.string() +
                               "/config.json: architectures is not one llama.cpp's converter maps "
                               "the llama way (or the head counts are missing); exported: " +
                               supported_gguf_architectures());
  const QuantizedBase quantized = find_quantized_weights(base);
  resolve_any_adapter(adapter, base, checkpoint_naming(base, o.common.targets),
                      &quantized.logical_shapes);
  const std::vector<ExportedModule> modules = plan_modules(adapter, *arch);
  const double alpha = o.alpha.value_or(global_alpha(modules));

  OutputFile out(
      o.common.output, o.common.force, {o.adapter, o.base}, o.common.report_path,
      [](const fs::path& p) {
        std::ifstream f(p, std::ios::binary);
        char magic[4] = {};
        return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
      },
      "a GGUF file");

  gguf::GgufFile file;
  file.set_string("general.architecture", arch->name);
  file.set_string("general.type", "adapter");
  file.set_string("general.name", fs::absolute(o.adapter).lexically_normal().filename().string());
  file.set_string("adapter.type", "lora");
  file.set_f32("adapter.lora.alpha", static_cast<float>(alpha));

  Report report("export-gguf", o.common.argv);
  report.add_input("adapter", adapter.weights.string(),
                   fingerprint(Checkpoint::open(adapter.weights)));
  report.add_input("base", o.base.string(), fingerprint(base));
  std::map<std::string, int> types;
  std::size_t folded = 0, permuted = 0;
  for (const auto& m : modules) {
    const AdapterDelta& d = *m.delta;
    const double llama_scale = alpha / d.rank;
    // lora_b carries PEFT's scale over llama.cpp's: (alpha / r) · B' · A = s · B · A.
    const float fold = static_cast<float>(d.scale / llama_scale);
    // torch layouts: lora_a [r, in] and lora_b [out, r]; an embedding ([vocab, dim] storage, L =
    // Aᵀ, R = Bᵀ) is written as the converter does, lora_a = Aᵀ [vocab, r] and lora_b = B.
    std::vector<float> a, b;
    std::int64_t a_rows, a_cols, b_rows;
    if (d.embedding) {
      a = d.L;
      a_rows = d.rows;
      a_cols = d.rank;
      b_rows = d.cols;
      b = transpose(d.R, d.rank, d.cols);
    } else {
      a = d.R;
      a_rows = d.rank;
      a_cols = d.cols;
      b_rows = d.rows;
      b = d.L;
    }
    if (fold != 1.0f) {
      for (float& x : b)
        x *= fold;
      ++folded;
    }
    if (m.heads > 0) {
      const std::vector<std::int64_t> order = rope_row_order(b_rows, m.heads);
      std::vector<float> p(b.size());
      for (std::int64_t r = 0; r < b_rows; ++r)
        std::copy_n(b.begin() + order[static_cast<std::size_t>(r)] * d.rank, d.rank,
                    p.begin() + r * d.rank);
      b = std::move(p);
      ++permuted;
    }
    const gguf::TensorType ta = storage_type(o.outtype, a_cols);
    const gguf::TensorType tb = storage_type(o.outtype, d.rank);
    const std::string stem = m.tensor;
    file.add_tensor(stem + ".lora_a", a, a_rows, a_cols, ta);
    file.add_tensor(stem + ".lora_b", b, b_rows, d.rank, tb);
    ++types[gguf::tensor_type_name(ta)];
    ++types[gguf::tensor_type_name(tb)];
    report.add_row({{"module", d.module},
                    {"base_tensor", d.base_tensor},
                    {"gguf_tensor", m.tensor},
                    {"rank", d.rank},
                    {"peft_scale", round_sig(d.scale)},
                    {"llama_cpp_scale", round_sig(llama_scale)},
                    {"lora_b_factor", round_sig(static_cast<double>(fold))},
                    {"rope_permuted", m.heads > 0},
                    {"embedding", d.embedding},
                    {"lora_a_type", gguf::tensor_type_name(ta)},
                    {"lora_b_type", gguf::tensor_type_name(tb)}});
  }
  const std::vector<std::byte> bytes = file.bytes();
  out.write(bytes);

  report.settings() = {{"architecture", arch->name},
                       {"hf_architecture", arch->hf_class},
                       {"adapter_format", adapter_format_name(adapter.format)},
                       {"outtype", gguf::tensor_type_name(o.outtype)},
                       {"alpha", alpha},
                       {"alpha_from", o.alpha ? "--alpha" : "the most common scale * rank"},
                       {"scale_rule", "llama.cpp: alpha / rank per tensor (rank = lora_b ne[0])"},
                       {"n_head", arch->n_head},
                       {"n_head_kv", arch->n_head_kv},
                       {"notes", adapter.notes}};
  Json type_counts = Json::object();
  for (const auto& [t, n] : types)
    type_counts[t] = n;
  report.totals() = {{"modules", modules.size()},
                     {"tensors", 2 * modules.size()},
                     {"lora_b_rescaled", folded},
                     {"rope_permuted", permuted},
                     {"tensor_types", type_counts},
                     {"bytes", bytes.size()},
                     {"seconds", round_sig(seconds_since(start), 4)}};
  const Json j = report.to_json();
  out.commit();
  out.write_report_copy(j.dump(2) + "\n");
  return j;
}

std::string export_gguf_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "wrote %s: %zu modules (%s, alpha %g), %zu lora_b rescaled to llama.cpp's alpha / "
                "rank, %zu q/k permuted, %.2fs\n",
                output.c_str(), t["modules"].get<std::size_t>(),
                report["settings"]["architecture"].get<std::string>().c_str(),
                report["settings"]["alpha"].get<double>(), t["lora_b_rescaled"].get<std::size_t>(),
                t["rope_permuted"].get<std::size_t>(), t["seconds"].get<double>());
  return buf;
}

}  // namespace ckpt
