#include "ckptkit/engine/stream.hpp"

#include <algorithm>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/sha256.hpp"
#include "ckptkit/engine/shard.hpp"
#include "ckptkit/io/output_dir.hpp"

namespace ckpt {

std::vector<InputFingerprint> fingerprint(const Checkpoint& c) {
  std::vector<InputFingerprint> out;
  for (const auto& s : c.shards()) {
    const auto bytes = s.file->bytes();
    out.push_back({s.path.filename().string(), bytes.size(),
                   sha256_hex(bytes.subspan(0, static_cast<std::size_t>(s.header.data_start)))});
  }
  return out;
}

void copy_model_files(const Checkpoint& in, const std::filesystem::path& dir,
                      const std::function<void(nlohmann::json&)>& edit_config) {
  if (!edit_config || !in.config()) {
    copy_files(in.extra_files(), dir,
               edit_config ? std::vector<std::string>{"config.json"} : std::vector<std::string>{});
    return;
  }
  copy_files(in.extra_files(), dir, {"config.json"});
  nlohmann::json c = *in.config();
  edit_config(c);
  write_text_file(dir / "config.json", c.dump(2) + "\n");
}

StreamJob folding(StreamJob job, std::set<std::string> folded) {
  auto names = std::make_shared<const std::set<std::string>>(std::move(folded));
  job.plan = [names, plan = std::move(job.plan)](const CheckpointTensor& t) {
    if (!names->count(t.info.name)) return plan(t);
    TensorPlan p;
    p.passthrough = false;
    return p;
  };
  job.compute = [names, compute = std::move(job.compute)](const CheckpointTensor& t,
                                                          const TensorView& v) {
    return names->count(t.info.name) ? TensorResult{} : compute(t, v);
  };
  return job;
}

std::vector<std::string> stream_checkpoint(const StreamJob& job,
                                           const std::filesystem::path& out_dir,
                                           WriterOptions options, const ExecOptions& exec,
                                           const std::string& progress_label) {
  const Checkpoint& in = *job.input;
  const auto& tensors = in.tensors();
  std::vector<TensorPlan> plans;
  plans.reserve(tensors.size());
  std::vector<TensorSpec> out_plan;
  for (const auto& t : tensors) {
    TensorPlan p = job.plan(t);
    if (p.passthrough) {
      p.outputs = {{t.info.name, t.info.dtype, t.info.shape}};
      p.working_set = 0;
    }
    for (const auto& o : p.outputs)
      out_plan.push_back(o);
    plans.push_back(std::move(p));
  }
  // --shard K/N: computed tensors are spread over the shards by bytes, passthrough tensors go
  // to shard 0; this run writes only its own tensors, and the manifest keeps the full plan.
  std::vector<char> mine(tensors.size(), 1);
  std::vector<int> plan_shard;
  std::vector<std::string> target_names;
  std::vector<std::uint64_t> target_bytes;
  std::vector<int> target_shard;
  std::vector<TensorSpec> part_plan;
  const WriterOptions full_options = options;
  std::uint64_t progress_bytes = in.total_bytes();
  if (exec.shard) {
    const ShardSpec spec = exec.shard->spec();
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (!plans[i].passthrough) {
        target_names.push_back(tensors[i].info.name);
        target_bytes.push_back(tensors[i].info.nbytes());
      }
    target_shard = assign_shards(target_bytes, target_names, spec.count);
    progress_bytes = 0;
    for (std::size_t i = 0, t = 0; i < tensors.size(); ++i) {
      const int owner = plans[i].passthrough ? 0 : target_shard[t++];
      mine[i] = owner == spec.index;
      for (const auto& o : plans[i].outputs) {
        plan_shard.push_back(owner);
        if (mine[i]) part_plan.push_back(o);
      }
      if (mine[i]) progress_bytes += tensors[i].info.nbytes();
    }
  }
  ShardedWriter writer(out_dir, exec.shard ? part_plan : out_plan, std::move(options));
  Progress progress(progress_label, progress_bytes, exec.progress);

  run_ordered(
      tensors.size(), [&](std::size_t i) { return mine[i] ? plans[i].working_set : 0; },
      [&](std::size_t i) -> Commit {
        const CheckpointTensor& t = tensors[i];
        if (!mine[i]) return [] {};  // another shard's tensor
        if (plans[i].passthrough) {
          return [&] {
            writer.write(t.info.name, in.view(t).bytes);
            in.release(t);
            progress.advance(t.info.nbytes(), t.info.name);
          };
        }
        TensorResult r;
        progress.working_on(t.info.name);
        try {
          r = job.compute(t, in.view(t));
        } catch (const Error& e) {
          const std::string msg = e.what();
          if (msg.find(t.info.name) != std::string::npos) throw;
          throw Error(e.kind(), located(in.file_of(t), t.info.name, msg));
        } catch (const std::bad_alloc&) {
          throw Error(ErrorKind::Io, located(in.file_of(t), t.info.name, "out of memory"));
        }
        if (r.outputs.size() != plans[i].outputs.size())
          fail(ErrorKind::Internal, located(in.file_of(t), t.info.name,
                                            "computed a different number of outputs than planned"));
        auto shared = std::make_shared<TensorResult>(std::move(r));
        return [&, i, shared] {
          for (const auto& o : shared->outputs)
            writer.write(o.name, o.bytes);
          if (shared->on_commit) shared->on_commit();
          in.release(tensors[i]);
          progress.advance(tensors[i].info.nbytes(), tensors[i].info.name);
        };
      },
      exec);
  writer.finish();
  progress.finish();
  if (exec.shard)
    exec.shard->record_checkpoint(out_dir, in, out_plan, plan_shard, full_options, target_names,
                                  target_bytes, target_shard, writer.files());
  return writer.files();
}

}  // namespace ckpt
