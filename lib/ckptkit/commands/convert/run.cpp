#include "ckptkit/commands/convert/convert.hpp"

#include <chrono>
#include <cstdio>

#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/output_layout.hpp"

namespace ckpt {

Json run_convert(const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint in = Checkpoint::open(options.input);
  OutputDir out(options.common.output, options.common.force, {options.input},
                options.common.report_path);
  // A cast would change the quantization constants (absmax, maps) the codes are decoded with.
  if (options.dtype)
    refuse_quantized_checkpoint(in,
                                "--dtype would cast its quantization constants; for floats use "
                                "ckptkit quantize --dequantize --dtype");
  Report report("convert", options.common.argv);
  report.add_input("checkpoint", options.input.string(), fingerprint(in));
  report.settings() = {
      {"dtype", options.dtype ? std::string(dtype_name(*options.dtype)) : "unchanged"},
      {"max_shard_size", options.common.max_shard_size},
      {"zstd", options.common.zstd}};
  std::uint64_t cast = 0;
  StreamJob job;
  job.input = &in;
  job.plan = [&](const CheckpointTensor& t) {
    TensorPlan p;
    if (options.dtype && is_float(t.info.dtype) && t.info.dtype != *options.dtype) {
      p.passthrough = false;
      p.outputs = {{t.info.name, *options.dtype, t.info.shape}};
      p.working_set = t.info.nbytes() * 3;
    }
    return p;
  };
  job.compute = [&](const CheckpointTensor& t, const TensorView& v) {
    TensorResult r;
    auto bytes = convert_float_bytes(v.dtype, *options.dtype, v.bytes);
    check_cast_finite(v.dtype, v.bytes, *options.dtype, bytes, in.file_of(t), t.info.name);
    r.outputs.push_back({t.info.name, *options.dtype, t.info.shape, std::move(bytes)});
    r.on_commit = [&cast] { ++cast; };
    return r;
  };
  WriterOptions w = writer_options(options.common, in.metadata());
  w.write_metadata = in.shards().front().header.has_metadata;
  const std::filesystem::path model_dir = out.part(kModelPart);
  const auto files = stream_checkpoint(job, model_dir, w, options.common.exec, "convert");
  copy_files(in.extra_files(), model_dir);
  for (const auto& t : in.tensors())
    report.add_row({{"name", t.info.name},
                    {"dtype", std::string(dtype_name(t.info.dtype))},
                    {"shape", t.info.shape},
                    {"bytes", t.info.nbytes()}});
  report.totals() = {{"tensors", in.tensors().size()},
                     {"cast", cast},
                     {"bytes_in", in.total_bytes()},
                     {"files", files},
                     {"seconds", seconds_since(start)}};
  return commit_with_report(report, out, options.common);
}

std::string convert_summary(const Json& report, const std::string& output) {
  const auto& t = report["totals"];
  char buf[512];
  std::snprintf(buf, sizeof buf, "wrote %s: %llu tensors (%llu cast), %zu files, %.2fs\n",
                output.c_str(), static_cast<unsigned long long>(t["tensors"].get<std::uint64_t>()),
                static_cast<unsigned long long>(t["cast"].get<std::uint64_t>()), t["files"].size(),
                t["seconds"].get<double>());

  return buf;
}

}  // namespace ckpt
