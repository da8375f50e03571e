#include "ckptkit/pipeline/quantize.hpp"

#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/io/lossless.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/pipeline/bnb_layout.hpp"
#include "ckptkit/pipeline/stream.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {
namespace fs = std::filesystem;
using quant::DoubleQuant;
using quant::QuantizedTensor;
using quant::QuantSpec;

namespace {

constexpr std::string_view kBnbState = bnb::kNf4StateSuffix;
constexpr const char* kBnbFp4State = ".quant_state.bitsandbytes__fp4";
constexpr const char* kCkState = ".quant_state.ckptkit";
constexpr std::size_t kFloatReprMax = 24;  // longest Python repr of a double

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

enum class Layout { BnbNf4, BnbInt8, Ckptkit };

struct Resolved {
  Layout layout = Layout::BnbNf4;
  QuantSpec spec;
};

Resolved resolve(const QuantizeOptions& o) {
  Resolved r;
  r.spec.scheme = quant::Scheme::parse(o.scheme);
  const bool int8 = r.spec.scheme.family == quant::Family::INT && r.spec.scheme.bits == 8;
  if (o.layout != "auto" && o.layout != "bnb" && o.layout != "ckptkit")
    fail(ErrorKind::Usage, "--layout: '" + o.layout + "' is not auto, bnb or ckptkit");
  if (int8 && o.block == 0 && o.layout != "ckptkit") {
    if (!o.double_quant.empty() && o.double_quant != "none")
      fail(ErrorKind::Usage,
           "--double-quant: bitsandbytes int8 (row-wise LLM.int8) has no double quantization; give "
           "--block for blockwise int8");
    r.layout = Layout::BnbInt8;
    return r;
  }
  r.spec.block = o.block == 0 ? 64 : o.block;
  const std::string dq = o.double_quant.empty() ? "bnb" : o.double_quant;
  if (dq == "bnb")
    r.spec.dq = DoubleQuant::Bnb;
  else if (dq == "lq")
    r.spec.dq = DoubleQuant::Lq;
  else if (dq == "none")
    r.spec.dq = DoubleQuant::None;
  else
    fail(ErrorKind::Usage, "--double-quant: '" + dq + "' is not bnb, lq or none");
  r.spec.lq_bits = o.lq_bits;
  r.spec.lq_group = o.lq_group;
  const auto sd = parse_float_dtype(o.lq_scale_dtype);
  if (!sd) fail(ErrorKind::Usage, "--lq-scale-dtype: unknown type '" + o.lq_scale_dtype + "'");
  r.spec.lq_scale_dtype = *sd;
  r.spec.validate();
  const bool bnb_ok = r.spec.scheme.family == quant::Family::NF && r.spec.scheme.bits == 4 &&
                      r.spec.dq != DoubleQuant::Lq && r.spec.block >= 32;
  if (o.layout == "bnb" && !bnb_ok)
    fail(ErrorKind::Usage,
         "--layout bnb: bitsandbytes stores nf4 (block >= 32, double quant bnb or none) and "
         "row-wise int8 only");
  r.layout = (bnb_ok && o.layout != "ckptkit") ? Layout::BnbNf4 : Layout::Ckptkit;
  return r;
}

std::string layout_name(Layout l) {
  return l == Layout::BnbNf4 ? "bnb-nf4" : l == Layout::BnbInt8 ? "bnb-int8" : "ckptkit";
}
std::string dq_name(DoubleQuant d) {
  return d == DoubleQuant::Bnb ? "bnb" : d == DoubleQuant::Lq ? "lq" : "none";
}

std::string shape_json(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string ck_state_json(const QuantSpec& spec, DType dtype, const Shape& shape,
                          std::optional<double> offset) {
  std::string j = "{\"format\": \"ckptkit-quant\", \"version\": 1, \"scheme\": \"" +
                  spec.scheme.name() + "\", \"bits\": " + std::to_string(spec.scheme.bits) +
                  ", \"block\": " + std::to_string(spec.block) + ", \"double_quant\": \"" +
                  dq_name(spec.dq) + "\"";
  if (spec.dq == DoubleQuant::Bnb) j += ", \"nested_block\": " + std::to_string(spec.nested_block);
  if (spec.dq == DoubleQuant::Lq)
    j += ", \"lq_scale_bits\": " + std::to_string(spec.lq_bits) +
         ", \"lq_group\": " + std::to_string(spec.lq_group) + ", \"lq_scale_dtype\": \"" +
         std::string(dtype_name(spec.lq_scale_dtype)) + "\"";
  if (spec.dq != DoubleQuant::None)
    j += ", \"offset\": " + (offset ? python_float_repr(*offset) : std::string(kFloatReprMax, '0'));
  return j + ", \"dtype\": \"" + std::string(dtype_name(dtype)) +
         "\", \"shape\": " + shape_json(shape) + "}";
}

/// The tensors written in place of one quantized weight (plan order = write order).
std::vector<TensorSpec> plan_outputs(const Resolved& r, const TensorInfo& t) {
  const std::int64_t n = numel(t.shape);
  const auto& s = r.spec;
  const std::string& P = t.name;
  if (r.layout == Layout::BnbInt8) {
    const std::string prefix = P.substr(0, P.size() - (ends_with(P, "weight") ? 6 : 0));
    return {{P, DType::I8, t.shape},
            {prefix + "SCB", DType::F32, {t.shape[0]}},
            {prefix + "weight_format", DType::U8, {}}};
  }
  const std::int64_t nb = (n + s.block - 1) / s.block;
  const std::int64_t levels = static_cast<std::int64_t>(quant::scheme_levels(s.scheme).size());
  if (r.layout == Layout::BnbNf4) return bnb::nf4_specs(P, s, t.dtype, t.shape);
  std::vector<TensorSpec> o = {{P, DType::U8, {(n * s.scheme.bits + 7) / 8}}};
  if (s.dq == DoubleQuant::None) o.push_back({P + ".qscales", DType::F32, {nb}});
  if (s.dq == DoubleQuant::Bnb) {
    o.push_back({P + ".qscales", DType::U8, {nb}});
    o.push_back({P + ".qscales_nested", DType::F32, {(nb + s.nested_block - 1) / s.nested_block}});
    o.push_back({P + ".qscales_map", DType::F32, {256}});
  }
  if (s.dq == DoubleQuant::Lq) {
    o.push_back({P + ".qscales", DType::U8, {(nb * s.lq_bits + 7) / 8}});
    o.push_back({P + ".qscales_nested", s.lq_scale_dtype, {(nb + s.lq_group - 1) / s.lq_group}});
  }
  o.push_back({P + ".codebook", DType::F32, {levels}});
  o.push_back(
      {P + kCkState,
       DType::U8,
       {static_cast<std::int64_t>(ck_state_json(s, t.dtype, t.shape, std::nullopt).size())}});
  return o;
}

std::vector<OwnedTensor> make_outputs(const Resolved& r, const TensorInfo& t,
                                      const std::vector<TensorSpec>& plan, const QuantizedTensor* q,
                                      const quant::RowwiseInt8* q8) {
  std::vector<std::vector<std::byte>> data;
  if (r.layout == Layout::BnbInt8) {
    data = {as_bytes(q8->cb), as_bytes(q8->scb), {std::byte{0}}};
  } else if (r.layout == Layout::BnbNf4) {
    return bnb::nf4_tensors(t.name, r.spec, t.dtype, t.shape, *q);
  } else {
    data.push_back(as_bytes(q->packed));
    if (r.spec.dq == DoubleQuant::None) data.push_back(as_bytes(q->absmax));
    if (r.spec.dq == DoubleQuant::Bnb) {
      data.push_back(as_bytes(q->scale_codes));
      data.push_back(as_bytes(q->nested_absmax));
      data.push_back(as_bytes(q->nested_map));
    }
    if (r.spec.dq == DoubleQuant::Lq) {
      data.push_back(as_bytes(quant::pack_codes(q->scale_codes, r.spec.lq_bits)));
      std::vector<std::byte> nested(q->nested_absmax.size() * dtype_size(r.spec.lq_scale_dtype));
      encode_from_f32(r.spec.lq_scale_dtype, q->nested_absmax, nested);
      data.push_back(std::move(nested));
    }
    data.push_back(as_bytes(q->codebook));
    data.push_back(
        bnb::padded_bytes(ck_state_json(r.spec, t.dtype, t.shape, static_cast<double>(q->offset)),
                          plan.back().nbytes()));
  }
  return bnb::planned_tensors(plan, std::move(data));
}

nlohmann::json bnb_quantization_config(const Resolved& r, const QuantizeOptions& o,
                                       const std::vector<std::string>& skip) {
  return bnb::quantization_config(r.layout == Layout::BnbNf4, o.compute_dtype,
                                  r.spec.dq == DoubleQuant::Bnb, skip);
}

void reject_quantized_input(const Checkpoint& in) {
  if (is_lossless_archive(in.shards().front().header)) return;  // decoded transparently
  for (const auto& t : in.tensors()) {
    const std::string& n = t.info.name;
    if (n.find(".quant_state.bitsandbytes__") != std::string::npos || ends_with(n, kCkState) ||
        (ends_with(n, "SCB") && t.info.dtype == DType::F32))
      fail(ErrorKind::Usage, located(in.file_of(t), n,
                                     "the input is already quantized; dequantize it first (ckptkit "
                                     "quantize --dequantize)"));
  }
}

void write_config(const Checkpoint& in, const fs::path& out,
                  const std::function<void(nlohmann::json&)>& edit) {
  copy_files(in.extra_files(), out, {"config.json"});
  if (!in.config()) return;
  nlohmann::json c = *in.config();
  edit(c);
  write_text_file(out / "config.json", c.dump(2) + "\n");
}

// ---------------------------------------------------------------- quantize

/// f32 values of a float view; bf16 is widened inline (a shift: vectorizes, and it is the hot
/// input type), other types go through core's decoder.
std::vector<float> widen(const TensorView& v) {
  if (v.dtype != DType::BF16) return to_f32(v);
  const std::size_t n = v.bytes.size() / 2;
  std::vector<std::uint16_t> h(n);
  std::memcpy(h.data(), v.bytes.data(), n * 2);
  std::vector<std::uint32_t> u(n);
  for (std::size_t i = 0; i < n; ++i)
    u[i] = static_cast<std::uint32_t>(h[i]) << 16;
  std::vector<float> x(n);
  std::memcpy(x.data(), u.data(), n * 4);
  return x;
}

Json run_lossless(const QuantizeOptions& o, const Checkpoint& in, OutputDir& out, Report& report,
                  std::chrono::steady_clock::time_point start) {
  if (is_lossless_archive(in.shards().front().header))
    fail(ErrorKind::Usage, in.shards().front().path.string() + ": already a lossless archive");
  if (o.zstd_level < 1 || o.zstd_level > 22)
    fail(ErrorKind::Usage, "--level: zstd levels are 1..22");
  report.settings() = {{"scheme", "lossless"},
                       {"codec", "byteplanes+zstd"},
                       {"zstd_level", o.zstd_level},
                       {"chunk_elems", LosslessOptions{}.chunk_elems}};
  LosslessArchiveWriter writer(out.path(), in.metadata(), in.shards().front().header.has_metadata,
                               o.common.max_shard_size);
  LosslessOptions lo;
  lo.level = o.zstd_level;
  const ParallelFor pf = [](std::size_t n, const std::function<void(std::size_t)>& body) {
    parallel_chunks(n, 1, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i)
        body(i);
    });
  };
  const auto& ts = in.tensors();
  std::uint64_t in_bytes = 0, out_bytes = 0;
  Progress progress("quantize", in.total_bytes(), o.common.exec.progress);
  run_ordered(
      ts.size(), [&](std::size_t i) { return ts[i].info.nbytes() * 2; },
      [&](std::size_t i) -> Commit {
        const auto& t = ts[i];
        const auto t0 = std::chrono::steady_clock::now();
        auto blob = std::make_shared<std::vector<std::byte>>(
            lossless_encode(t.info.dtype, in.view(t).bytes, lo, pf));
        const double secs = seconds_since(t0);
        return [&, i, blob, secs] {
          const auto& tt = ts[i];
          writer.add(tt.info.name, tt.info.dtype, tt.info.shape, *blob);
          in_bytes += tt.info.nbytes();
          out_bytes += blob->size();
          report.add_row(
              {{"name", tt.info.name},
               {"dtype", std::string(dtype_name(tt.info.dtype))},
               {"shape", tt.info.shape},
               {"bytes", tt.info.nbytes()},
               {"compressed", blob->size()},
               {"ratio",
                round_sig(blob->empty() ? 0.0 : double(tt.info.nbytes()) / double(blob->size()))},
               {"timing", {{"seconds", round_sig(secs)}}}});
          in.release(tt);
          progress.advance(tt.info.nbytes(), tt.info.name);
        };
      },
      o.common.exec);
  writer.finish();
  progress.finish();
  copy_files(in.extra_files(), out.path());
  report.totals() = {{"tensors", ts.size()},
                     {"bytes_in", in_bytes},
                     {"bytes_out", writer.bytes_written()},
                     {"tensor_bytes_out", out_bytes},
                     {"ratio", round_sig(out_bytes ? double(in_bytes) / double(out_bytes) : 0.0)},
                     {"files", writer.files()},
                     {"seconds", seconds_since(start)}};
  out.commit();
  Json j = report.to_json();
  if (o.common.report_path) report.write(*o.common.report_path);
  return j;
}

Json run_quant(const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint in = Checkpoint::open(o.input);
  OutputDir out(o.common.output, o.common.force, {o.input});
  Report report("quantize", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  if (o.scheme == "lossless") return run_lossless(o, in, out, report, start);
  reject_quantized_input(in);
  const Resolved r = resolve(o);
  const TargetSelector sel(o.common.targets, in.config());

  std::vector<std::string> skip;
  std::map<std::string, std::vector<TensorSpec>> plans;
  for (const auto& t : in.tensors()) {
    const auto d = sel.decide(t.info);
    if (d.selected) {
      if (!is_float(t.info.dtype))
        fail(ErrorKind::Format, located(in.file_of(t), t.info.name,
                                        "is " + std::string(dtype_name(t.info.dtype)) +
                                            ", not a float tensor: cannot quantize"));
      plans[t.info.name] = plan_outputs(r, t.info);
    } else if (t.info.shape.size() == 2 && ends_with(t.info.name, ".weight")) {
      skip.push_back(TargetSelector::module_name(t.info.name));
    }
  }
  if (plans.empty())
    fail(ErrorKind::Usage, o.input.string() + ": no tensor matches the target selection");

  Json settings = {{"scheme", r.spec.scheme.name()}, {"layout", layout_name(r.layout)}};
  if (r.layout == Layout::BnbInt8) {
    settings["block"] = "row";
    settings["double_quant"] = "none";
  } else {
    settings["block"] = r.spec.block;
    settings["double_quant"] = dq_name(r.spec.dq);
    if (r.spec.dq == DoubleQuant::Bnb) settings["nested_block"] = r.spec.nested_block;
    if (r.spec.dq == DoubleQuant::Lq) {
      settings["lq_scale_bits"] = r.spec.lq_bits;
      settings["lq_group"] = r.spec.lq_group;
      settings["lq_scale_dtype"] = std::string(dtype_name(r.spec.lq_scale_dtype));
    }
    settings["bits_per_param_formula"] = quant::formula_bits_per_param(r.spec);
  }
  report.settings() = settings;

  std::uint64_t params = 0, stored_bytes = 0, quantized = 0;
  double quant_seconds = 0;
  StreamJob job;
  job.input = &in;
  job.plan = [&](const CheckpointTensor& t) {
    TensorPlan p;
    auto it = plans.find(t.info.name);
    if (it == plans.end()) return p;
    p.passthrough = false;
    p.outputs = it->second;
    p.working_set = static_cast<std::uint64_t>(t.info.shape.empty() ? 1 : numel(t.info.shape)) * 10;
    return p;
  };
  job.compute = [&](const CheckpointTensor& t, const TensorView& v) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> x = widen(v);
    const std::int64_t n = static_cast<std::int64_t>(x.size());
    quant::ErrorStats err;
    std::optional<QuantizedTensor> q;
    std::optional<quant::RowwiseInt8> q8;
    double bits_formula = 0, bits_stored = 0;
    try {
      if (r.layout == Layout::BnbInt8) {
        const std::int64_t rows = t.info.shape[0], cols = n / std::max<std::int64_t>(rows, 1);
        q8 = quant::quantize_rowwise_int8(x, rows, cols);
        std::vector<float> y(x.size());
        quant::dequantize_rowwise_int8(*q8, cols, y);
        err = quant::error_stats(x, y);
        bits_formula = 8.0 + 32.0 / double(cols);
        bits_stored = (8.0 * double(n) + 32.0 * double(rows) + 8.0) / double(n);
      } else {
        q = quant::quantize(x, r.spec, &err);  // measures the error of the dequantized values
        bits_formula = quant::formula_bits_per_param(r.spec);
        bits_stored = quant::stored_bits_per_param(*q);
      }
    } catch (const Error& e) {
      throw Error(e.kind(), located(in.file_of(t), t.info.name, e.what()));
    }
    TensorResult res;
    res.outputs =
        make_outputs(r, t.info, plans.at(t.info.name), q ? &*q : nullptr, q8 ? &*q8 : nullptr);
    std::uint64_t bytes = 0;
    for (const auto& ot : res.outputs)
      bytes += ot.bytes.size();
    const double secs = seconds_since(t0);
    Json row = {{"name", t.info.name},
                {"shape", t.info.shape},
                {"dtype", std::string(dtype_name(t.info.dtype))},
                {"scheme", r.spec.scheme.name()},
                {"layout", layout_name(r.layout)},
                {"block", r.layout == Layout::BnbInt8 ? Json("row") : Json(r.spec.block)},
                {"double_quant", r.layout == Layout::BnbInt8 ? "none" : dq_name(r.spec.dq)},
                {"bits_per_param", round_sig(bits_formula, 8)},
                {"bits_per_param_stored", round_sig(bits_stored, 8)},
                {"rel_fro_error", round_sig(err.rel_fro)},
                {"max_abs_error", round_sig(err.max_abs)},
                {"sqnr_db", round_sig(err.sqnr_db)},
                {"timing", {{"seconds", round_sig(secs)}}}};
    res.on_commit = [&, row, n, bytes, secs] {
      report.add_row(row);
      params += static_cast<std::uint64_t>(n);
      stored_bytes += bytes;
      quant_seconds += secs;
      ++quantized;
    };
    return res;
  };
  WriterOptions w = writer_options(o.common, in.metadata());
  w.write_metadata = true;
  if (w.metadata.empty()) w.metadata = {{"format", "pt"}};
  const auto files = stream_checkpoint(job, out.path(), w, o.common.exec, "quantize");
  write_config(in, out.path(), [&](nlohmann::json& c) {
    if (r.layout == Layout::Ckptkit) {
      c["ckptkit_quantization"] = {{"format", "ckptkit-quant"},
                                   {"version", 1},
                                   {"scheme", r.spec.scheme.name()},
                                   {"block", r.spec.block},
                                   {"double_quant", dq_name(r.spec.dq)}};
    } else {
      c["quantization_config"] = bnb_quantization_config(r, o, skip);
    }
  });
  report.totals() = {{"tensors", in.tensors().size()},
                     {"quantized", quantized},
                     {"params_quantized", params},
                     {"bytes_quantized", stored_bytes},
                     {"bits_per_param_stored",
                      round_sig(params ? 8.0 * double(stored_bytes) / double(params) : 0.0, 8)},
                     {"files", files},
                     {"quantize_seconds", quant_seconds},
                     {"seconds", seconds_since(start)}};
  report.write(out.path() / "report.json");
  out.commit();
  Json j = report.to_json();
  if (o.common.report_path) report.write(*o.common.report_path);
  return j;
}

// ---------------------------------------------------------------- dequantize

struct Group {
  enum Kind { Bnb4, Int8, Ck } kind;
  std::string base;
  std::vector<std::string> aux;
};

std::span<const std::byte> need(const Checkpoint& in, const std::string& name,
                                const std::string& for_tensor, std::optional<DType> dtype,
                                std::optional<std::int64_t> count) {
  const auto* t = in.find(name);
  if (!t)
    fail(ErrorKind::Format,
         located(in.path().string(), for_tensor, "missing companion tensor '" + name + "'"));
  if (dtype && t->info.dtype != *dtype)
    fail(ErrorKind::Format, located(in.file_of(*t), name,
                                    "is " + std::string(dtype_name(t->info.dtype)) + ", expected " +
                                        std::string(dtype_name(*dtype))));
  if (count && numel(t->info.shape) != *count)
    fail(ErrorKind::Format, located(in.file_of(*t), name,
                                    "has " + std::to_string(numel(t->info.shape)) +
                                        " elements, expected " + std::to_string(*count)));
  return in.view(*t).bytes;
}

template <typename T>
std::vector<T> vec_of(std::span<const std::byte> b) {
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

nlohmann::json parse_state(std::span<const std::byte> b, const std::string& where) {
  try {
    return nlohmann::json::parse(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
  } catch (const nlohmann::json::exception&) {
    fail(ErrorKind::Format, where + ": quant_state is not valid JSON");
  }
}

/// Dequantizes one group to f32 values; returns (values, original dtype, shape).
std::tuple<std::vector<float>, DType, Shape> dequantize_group(const Checkpoint& in,
                                                              const Group& g) {
  const std::string& P = g.base;
  const auto* main = in.find(P);
  const std::string where = located(in.file_of(*main), P, "");
  try {
    if (g.kind == Group::Int8) {
      if (main->info.shape.size() != 2) fail(ErrorKind::Format, where + "int8 weight is not 2-D");
      const std::int64_t rows = main->info.shape[0], cols = main->info.shape[1];
      quant::RowwiseInt8 q;
      q.cb = vec_of<std::int8_t>(in.view(*main).bytes);
      q.scb = vec_of<float>(need(in, g.aux[0], P, DType::F32, rows));
      std::vector<float> y(q.cb.size());
      quant::dequantize_rowwise_int8(q, cols, y);
      return {y, DType::F16, main->info.shape};
    }
    const auto st = parse_state(need(in, g.aux.back(), P, DType::U8, std::nullopt), where);
    QuantizedTensor q;
    DType orig;
    Shape shape;
    if (g.kind == Group::Bnb4) {
      if (st.value("quant_type", "") != "nf4")
        fail(ErrorKind::Unsupported, where + "quant_type is not nf4");
      const auto od = bnb::dtype_from_torch_name(st.value("dtype", ""));
      if (!od) fail(ErrorKind::Format, where + "unknown dtype in quant_state");
      orig = *od;
      shape = st.at("shape").get<Shape>();
      q.spec.scheme = quant::Scheme::parse("nf4");
      q.spec.block = st.at("blocksize").get<int>();
      q.numel = numel(shape);
      q.spec.dq = st.contains("nested_blocksize") ? DoubleQuant::Bnb : DoubleQuant::None;
      if (q.spec.dq == DoubleQuant::Bnb) q.spec.nested_block = st.at("nested_blocksize").get<int>();
      q.spec.validate();
      const std::int64_t nb = q.blocks();
      q.packed = vec_of<std::uint8_t>(need(in, P, P, DType::U8, (q.numel + 1) / 2));
      q.codebook = vec_of<float>(need(in, P + ".quant_map", P, DType::F32, 16));
      if (q.spec.dq == DoubleQuant::Bnb) {
        q.scale_codes = vec_of<std::uint8_t>(need(in, P + ".absmax", P, DType::U8, nb));
        q.nested_absmax = vec_of<float>(need(in, P + ".nested_absmax", P, DType::F32,
                                             (nb + q.spec.nested_block - 1) / q.spec.nested_block));
        q.nested_map = vec_of<float>(need(in, P + ".nested_quant_map", P, DType::F32, 256));
        q.offset = static_cast<float>(st.at("nested_offset").get<double>());
      } else {
        q.absmax = vec_of<float>(need(in, P + ".absmax", P, DType::F32, nb));
      }
    } else {
      if (st.value("format", "") != "ckptkit-quant" || st.value("version", 0) != 1)
        fail(ErrorKind::Unsupported, where + "unsupported ckptkit quant_state version");
      const auto od = parse_dtype(st.value("dtype", ""));
      if (!od) fail(ErrorKind::Format, where + "unknown dtype in quant_state");
      orig = *od;
      shape = st.at("shape").get<Shape>();
      q.spec.scheme = quant::Scheme::parse(st.at("scheme").get<std::string>());
      q.spec.block = st.at("block").get<int>();
      const std::string dq = st.at("double_quant").get<std::string>();
      q.spec.dq = dq == "bnb" ? DoubleQuant::Bnb : dq == "lq" ? DoubleQuant::Lq : DoubleQuant::None;
      if (q.spec.dq == DoubleQuant::Bnb) q.spec.nested_block = st.at("nested_block").get<int>();
      if (q.spec.dq == DoubleQuant::Lq) {
        q.spec.lq_bits = st.at("lq_scale_bits").get<int>();
        q.spec.lq_group = st.at("lq_group").get<int>();
        const auto sd = parse_dtype(st.at("lq_scale_dtype").get<std::string>());
        if (!sd) fail(ErrorKind::Format, where + "bad lq_scale_dtype");
        q.spec.lq_scale_dtype = *sd;
      }
      if (q.spec.dq != DoubleQuant::None)
        q.offset = static_cast<float>(st.at("offset").get<double>());
      q.spec.validate();
      q.numel = numel(shape);
      const std::int64_t nb = q.blocks();
      const std::int64_t levels =
          static_cast<std::int64_t>(quant::scheme_levels(q.spec.scheme).size());
      q.packed =
          vec_of<std::uint8_t>(need(in, P, P, DType::U8, (q.numel * q.spec.scheme.bits + 7) / 8));
      q.codebook = vec_of<float>(need(in, P + ".codebook", P, DType::F32, levels));
      if (q.spec.dq == DoubleQuant::None)
        q.absmax = vec_of<float>(need(in, P + ".qscales", P, DType::F32, nb));
      if (q.spec.dq == DoubleQuant::Bnb) {
        q.scale_codes = vec_of<std::uint8_t>(need(in, P + ".qscales", P, DType::U8, nb));
        q.nested_absmax = vec_of<float>(need(in, P + ".qscales_nested", P, DType::F32,
                                             (nb + q.spec.nested_block - 1) / q.spec.nested_block));
        q.nested_map = vec_of<float>(need(in, P + ".qscales_map", P, DType::F32, 256));
      }
      if (q.spec.dq == DoubleQuant::Lq) {
        const auto packed = vec_of<std::uint8_t>(
            need(in, P + ".qscales", P, DType::U8, (nb * q.spec.lq_bits + 7) / 8));
        q.scale_codes = quant::unpack_codes(packed, q.spec.lq_bits, nb);
        const std::int64_t ng = (nb + q.spec.lq_group - 1) / q.spec.lq_group;
        const auto b = need(in, P + ".qscales_nested", P, q.spec.lq_scale_dtype, ng);
        q.nested_absmax.resize(static_cast<std::size_t>(ng));
        decode_to_f32(q.spec.lq_scale_dtype, b, q.nested_absmax);
      }
    }
    if (q.spec.dq == DoubleQuant::Bnb)
      for (auto c : q.scale_codes)
        if (c >= q.nested_map.size()) fail(ErrorKind::Format, where + "scale code out of range");
    std::vector<float> y(static_cast<std::size_t>(q.numel));
    quant::dequantize(q, y);
    return {y, orig, shape};
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
  }
}

Json run_dequant(const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint in = Checkpoint::open(o.input);
  OutputDir out(o.common.output, o.common.force, {o.input});
  Report report("quantize --dequantize", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  std::map<std::string, Group> groups;
  std::set<std::string> aux;
  for (const auto& t : in.tensors()) {
    const std::string& n = t.info.name;
    if (ends_with(n, kBnbFp4State))
      fail(ErrorKind::Unsupported,
           located(in.file_of(t), n, "bitsandbytes fp4 is not supported (nf4 and int8 are)"));
    if (ends_with(n, kBnbState)) {
      const std::string base = n.substr(0, n.size() - kBnbState.size());
      groups[base] = {Group::Bnb4,
                      base,
                      {base + ".absmax", base + ".quant_map", base + ".nested_absmax",
                       base + ".nested_quant_map", n}};
    } else if (ends_with(n, kCkState)) {
      const std::string base = n.substr(0, n.size() - std::strlen(kCkState));
      groups[base] = {Group::Ck,
                      base,
                      {base + ".qscales", base + ".qscales_nested", base + ".qscales_map",
                       base + ".codebook", n}};
    } else if (ends_with(n, "SCB") && t.info.dtype == DType::F32) {
      const std::string prefix = n.substr(0, n.size() - 3);
      const auto* w = in.find(prefix + "weight");
      if (w && w->info.dtype == DType::I8)
        groups[prefix + "weight"] = {Group::Int8, prefix + "weight", {n, prefix + "weight_format"}};
    }
  }
  for (const auto& [b, g] : groups) {
    if (!in.find(b))
      fail(ErrorKind::Format,
           located(in.path().string(), b, "quant_state without its weight tensor"));
    for (const auto& a : g.aux)
      aux.insert(a);
  }
  report.settings() = {{"dequantize", true},
                       {"dtype", o.dtype ? std::string(dtype_name(*o.dtype)) : "original"},
                       {"lossless_archive", is_lossless_archive(in.shards().front().header)}};
  // The output shape/dtype of every group must be known up front: read the states now.
  std::map<std::string, TensorSpec> out_spec;
  for (const auto& [b, g] : groups) {
    const auto* t = in.find(b);
    DType orig = DType::F16;
    Shape shape = t->info.shape;
    if (g.kind != Group::Int8) {
      const auto st = parse_state(need(in, g.aux.back(), b, DType::U8, std::nullopt),
                                  located(in.file_of(*t), b, ""));
      try {
        shape = st.at("shape").get<Shape>();
        const auto od = g.kind == Group::Bnb4 ? bnb::dtype_from_torch_name(st.value("dtype", ""))
                                              : parse_dtype(st.value("dtype", ""));
        if (!od)
          fail(ErrorKind::Format, located(in.file_of(*t), b, "unknown dtype in quant_state"));
        orig = *od;
      } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::Format,
             located(in.file_of(*t), b, std::string("bad quant_state (") + e.what() + ")"));
      }
    }
    out_spec[b] = {b, o.dtype.value_or(orig), shape};
  }
  std::uint64_t done = 0;
  StreamJob job;
  job.input = &in;
  job.plan = [&](const CheckpointTensor& t) {
    TensorPlan p;
    if (aux.count(t.info.name)) {
      p.passthrough = false;
      return p;
    }
    auto it = out_spec.find(t.info.name);
    if (it == out_spec.end()) return p;
    p.passthrough = false;
    p.outputs = {it->second};
    p.working_set = it->second.nbytes() * 3;
    return p;
  };
  job.compute = [&](const CheckpointTensor& t, const TensorView&) {
    TensorResult res;
    auto it = out_spec.find(t.info.name);
    if (it == out_spec.end()) return res;  // a companion tensor: consumed by its weight
    auto [y, orig, shape] = dequantize_group(in, groups.at(t.info.name));
    (void)orig;
    std::vector<std::byte> bytes(it->second.nbytes());
    encode_from_f32(it->second.dtype, y, bytes);
    res.outputs.push_back({it->second.name, it->second.dtype, it->second.shape, std::move(bytes)});
    res.on_commit = [&, name = t.info.name, dt = it->second.dtype, sh = it->second.shape] {
      report.add_row({{"name", name}, {"dtype", std::string(dtype_name(dt))}, {"shape", sh}});
      ++done;
    };
    return res;
  };
  WriterOptions w = writer_options(o.common, in.metadata());
  w.write_metadata = in.shards().front().header.has_metadata;
  if (is_lossless_archive(in.shards().front().header)) w.write_metadata = !in.metadata().empty();
  const auto files = stream_checkpoint(job, out.path(), w, o.common.exec, "dequantize");
  write_config(in, out.path(), [](nlohmann::json& c) {
    c.erase("quantization_config");
    c.erase("ckptkit_quantization");
  });
  report.totals() = {{"tensors", in.tensors().size()},
                     {"dequantized", done},
                     {"files", files},
                     {"seconds", seconds_since(start)}};
  out.commit();
  Json j = report.to_json();
  if (o.common.report_path) report.write(*o.common.report_path);
  return j;
}

}  // namespace

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  const auto epos = s.find('e');
  const int exp = std::stoi(s.substr(epos + 1));
  if (exp < -4 || exp >= 16) return s;  // Python keeps scientific: "1e-05", "1.5e+16"
  std::string mant = s.substr(0, epos);
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp >= 0) {
    if (static_cast<int>(digits.size()) <= exp + 1) {
      out = digits + std::string(static_cast<std::size_t>(exp + 1) - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exp + 1)) + "." +
            digits.substr(static_cast<std::size_t>(exp + 1));
    }
  } else {
    out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
  }
  return neg ? "-" + out : out;
}

Json run_quantize(const QuantizeOptions& options) {
  return options.dequantize ? run_dequant(options) : run_quant(options);
}

}  // namespace ckpt
