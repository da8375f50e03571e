#include "ckptkit/commands/quantize/quantize.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/command_spec.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/formats/bnb_layout.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/io/lossless.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {
namespace fs = std::filesystem;
using quant::DoubleQuant;
using quant::QuantizedTensor;
using quant::QuantSpec;

namespace {

using Layout = QuantLayout;

QuantFormat resolve(const QuantizeOptions& o) {
  return resolve_quant_format(
      {o.scheme, o.block, o.double_quant, o.lq_bits, o.lq_group, o.lq_scale_dtype, o.layout});
}

// ---------------------------------------------------------------- quantize

Json run_lossless(const QuantizeOptions& o, const Checkpoint& in, OutputDir& out, Report& report,
                  std::chrono::steady_clock::time_point start) {
  if (is_lossless_archive(in.shards().front().header))
    fail(ErrorKind::Usage, in.shards().front().path.string() + ": already a lossless archive");
  // Byte-plane coding is I/O-bound (one pass over the input): nothing to spread over machines.
  if (o.common.exec.shard)
    fail(ErrorKind::Usage, "--shard: not supported with --scheme lossless (run it on one machine)");
  if (o.zstd_level < 1 || o.zstd_level > 22)
    fail(ErrorKind::Usage, "--level: zstd levels are 1..22");
  report.settings() = {{"scheme", "lossless"},
                       {"codec", "byteplanes+zstd"},
                       {"zstd_level", o.zstd_level},
                       {"chunk_elems", LosslessOptions{}.chunk_elems}};
  const fs::path model_dir = out.part(kQuantizedPart);
  LosslessArchiveWriter writer(model_dir, in.metadata(), in.shards().front().header.has_metadata,
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
        progress.working_on(t.info.name);
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
  copy_files(in.extra_files(), model_dir);
  report.totals() = {{"tensors", ts.size()},
                     {"bytes_in", in_bytes},
                     {"bytes_out", writer.bytes_written()},
                     {"tensor_bytes_out", out_bytes},
                     {"ratio", round_sig(out_bytes ? double(in_bytes) / double(out_bytes) : 0.0)},
                     {"files", writer.files()},
                     {"seconds", seconds_since(start)}};
  return commit_with_report(report, out, o.common);
}

Json run_quant(const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint in = Checkpoint::open(o.input);
  OutputDir out(o.common.output, o.common.force, {o.input}, o.common.report_path);
  Report report("quantize", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  if (o.scheme == "lossless") return run_lossless(o, in, out, report, start);
  refuse_quantized_checkpoint(in, "dequantize it first (ckptkit quantize --dequantize)");
  const QuantFormat r = resolve(o);
  const TargetSelection selection = select_targets(in, o.common.targets, {"quantize"});
  const std::vector<std::string>& skip = selection.left_alone;
  std::map<std::string, std::vector<TensorSpec>> plans;
  for (const auto& w : selection.targets)
    plans[w.tensor->info.name] = quant_format_specs(r, w.tensor->info);

  report.settings() = quant_format_json(r);

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
    // bf16 blockwise: quantized straight from the mapped bytes (no float32 copy of the tensor).
    const bool in_place = v.dtype == DType::BF16 && r.layout != Layout::BnbInt8;
    std::optional<QuantizedWeight> q;
    try {
      // Both measure the error of the dequantized values.
      q = in_place ? quantize_weight_bf16(r, t.info, v.bytes)
                   : quantize_weight(r, t.info, to_f32(v), false);
    } catch (const Error& e) {
      throw Error(e.kind(), located(in.file_of(t), t.info.name, e.what()));
    }
    const std::int64_t n = numel(t.info.shape);
    const quant::ErrorStats err = q->err;
    const double bits_formula = q->bits_formula, bits_stored = q->bits_stored;
    TensorResult res;
    res.outputs = std::move(q->tensors);
    std::uint64_t bytes = 0;
    for (const auto& ot : res.outputs)
      bytes += ot.bytes.size();
    const double secs = seconds_since(t0);
    Json row = {{"name", t.info.name},
                {"shape", t.info.shape},
                {"dtype", std::string(dtype_name(t.info.dtype))},
                {"scheme", quant_format_scheme(r)},
                {"layout", quant_layout_name(r.layout)},
                {"block", r.layout == Layout::BnbInt8 ? Json("row") : Json(r.spec.block)},
                {"double_quant", r.layout == Layout::BnbInt8 ? "none" : quant_dq_name(r.spec.dq)},
                {"bits_per_param", round_sig(bits_formula, 8)},
                {"bits_per_param_stored", round_sig(bits_stored, 8)},
                {"rel_error", round_sig(err.rel_fro)},
                {"max_abs_error", round_sig(err.max_abs)},
                {"sqnr_db", round_sig(err.sqnr_db)},
                {"params", n},
                {"stored_bytes", bytes},
                {"timing", {{"seconds", round_sig(secs)}}}};
    res.on_commit = [&, row, secs] {
      report.add_row(row);
      quant_seconds += secs;
    };
    return res;
  };
  WriterOptions w = writer_options(o.common, in.metadata());
  w.write_metadata = true;
  if (w.metadata.empty()) w.metadata = {{"format", "pt"}};
  const fs::path model_dir = out.part(kQuantizedPart);
  const auto files = stream_checkpoint(job, model_dir, w, o.common.exec, "quantize");
  copy_model_files(in, model_dir,
                   [&](nlohmann::json& c) { describe_quant_format(c, r, o.compute_dtype, skip); });
  report.totals() = {{"tensors", in.tensors().size()}};
  report.totals().update(quantize_totals(report.to_json(), files));
  report.totals()["quantize_seconds"] = quant_seconds;
  report.totals()["seconds"] = seconds_since(start);
  return commit_with_report(report, out, o.common);
}

// ---------------------------------------------------------------- dequantize

Json run_dequant(const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint in = Checkpoint::open(o.input);
  OutputDir out(o.common.output, o.common.force, {o.input}, o.common.report_path);
  Report report("quantize --dequantize", o.common.argv);
  report.add_input("checkpoint", o.input.string(), fingerprint(in));
  const auto groups = quantized_groups(in);
  std::set<std::string> aux;
  for (const auto& g : groups)
    aux.insert(g.companions.begin(), g.companions.end());
  report.settings() = {{"dequantize", true},
                       {"dtype", o.dtype ? std::string(dtype_name(*o.dtype)) : "original"},
                       {"lossless_archive", is_lossless_archive(in.shards().front().header)}};
  // The output shape/dtype of every group must be known up front: read the states now.
  std::map<std::string, TensorSpec> out_spec;
  std::map<std::string, const QuantizedGroup*> group_of;
  for (const auto& g : groups) {
    TensorSpec s = dequantized_spec(in, g);
    if (o.dtype) s.dtype = *o.dtype;
    out_spec[g.weight] = std::move(s);
    group_of[g.weight] = &g;
  }
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
    const DequantizedWeight d = dequantize_weight(in, *group_of.at(t.info.name));
    std::vector<std::byte> bytes(it->second.nbytes());
    encode_from_f32(it->second.dtype, d.values, bytes);
    // An int8 row-wise weight whose original dtype was f16 can hold values f16 cannot.
    check_cast_finite(DType::F32,
                      std::as_bytes(std::span<const float>(d.values.data(), d.values.size())),
                      it->second.dtype, bytes, in.file_of(t), t.info.name);
    res.outputs.push_back({it->second.name, it->second.dtype, it->second.shape, std::move(bytes)});
    res.on_commit = [&, name = t.info.name, dt = it->second.dtype, sh = it->second.shape] {
      report.add_row({{"name", name}, {"dtype", std::string(dtype_name(dt))}, {"shape", sh}});
    };
    return res;
  };
  WriterOptions w = writer_options(o.common, in.metadata());
  w.write_metadata = in.shards().front().header.has_metadata;
  if (is_lossless_archive(in.shards().front().header)) w.write_metadata = !in.metadata().empty();
  const fs::path model_dir = out.part(kModelPart);
  const auto files = stream_checkpoint(job, model_dir, w, o.common.exec, "dequantize");
  copy_model_files(in, model_dir, [](nlohmann::json& c) {
    c.erase("quantization_config");
    c.erase("ckptkit_quantization");
  });
  report.totals() = {{"tensors", in.tensors().size()}};
  report.totals().update(quantize_totals(report.to_json(), files));
  report.totals()["seconds"] = seconds_since(start);
  return commit_with_report(report, out, o.common);
}

}  // namespace

Json quantize_totals(const Json& report, const std::vector<std::string>& files) {
  const Json& rows = report["tensors"];
  if (report["settings"].value("dequantize", false))
    return {{"dequantized", rows.size()}, {"files", files}};
  const std::uint64_t params = sum_of_counts(rows, "params");
  const std::uint64_t stored_bytes = sum_of_counts(rows, "stored_bytes");
  return {{"quantized", rows.size()},
          {"params_quantized", params},
          {"bytes_quantized", stored_bytes},
          {"bits_per_param_stored",
           round_sig(params ? 8.0 * double(stored_bytes) / double(params) : 0.0, 8)},
          {"files", files}};
}

Json run_quantize(const QuantizeOptions& options) {
  return options.dequantize ? run_dequant(options) : run_quant(options);
}

std::string quantize_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  if (report["settings"].value("dequantize", false)) {
    std::snprintf(buf, sizeof buf, "wrote %s: %llu tensors dequantized, %.2fs\n", output.c_str(),
                  static_cast<unsigned long long>(t["dequantized"].get<std::uint64_t>()),
                  t["seconds"].get<double>());
  } else if (report["settings"].value("scheme", "") == "lossless") {
    std::snprintf(buf, sizeof buf, "wrote %s: %llu tensors, ratio %.4f, %.2fs\n", output.c_str(),
                  static_cast<unsigned long long>(t["tensors"].get<std::uint64_t>()),
                  t["ratio"].get<double>(), t["seconds"].get<double>());
  } else {
    std::snprintf(
        buf, sizeof buf, "wrote %s: %llu tensors quantized (%s), %.4f bits/param stored, %.2fs\n",
        output.c_str(), static_cast<unsigned long long>(t["quantized"].get<std::uint64_t>()),
        report["settings"]["scheme"].get<std::string>().c_str(),
        t["bits_per_param_stored"].get<double>(), t["seconds"].get<double>());
  }
  return buf;
}

}  // namespace ckpt
