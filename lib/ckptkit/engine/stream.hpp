// Streaming a checkpoint through the engine: each input tensor is either passed through
// byte for byte (zero-copy from the mmap to the output file) or computed into new tensors.
// Outputs are planned before any work starts, so the writer can stream them in order.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "ckptkit/engine/engine.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

/// What becomes of one input tensor.
struct TensorPlan {
  bool passthrough = true;          // copy the input tensor as it is
  std::vector<TensorSpec> outputs;  // when computed: the tensors written in its place
  std::uint64_t working_set = 0;    // bytes while in flight (for the memory budget)
};

/// The result of computing one tensor: its outputs (plan order) and an in-order callback
/// (report rows, adapter tensors), run by the serial sink.
struct TensorResult {
  std::vector<OwnedTensor> outputs;
  std::function<void()> on_commit;
};

struct StreamJob {
  const Checkpoint* input = nullptr;
  std::function<TensorPlan(const CheckpointTensor&)> plan;
  std::function<TensorResult(const CheckpointTensor&, const TensorView&)> compute;
};

/// The StreamJob of a command that computes a list of targets (each with a `tensor` member, the
/// CheckpointTensor it replaces) and passes every other tensor through: `plan(target)` gives the
/// target's output tensors and its bytes in flight, `compute(target, view, outputs)` fills the
/// outputs and returns what the in-order sink hands to `commit`. `targets` must outlive the job.
template <class Target, class Plan, class Compute, class Commit>
StreamJob targets_job(const Checkpoint& in, const std::vector<Target>& targets, Plan plan,
                      Compute compute, Commit commit) {
  auto index = std::make_shared<std::map<std::string, std::size_t>>();
  for (std::size_t i = 0; i < targets.size(); ++i)
    index->emplace(targets[i].tensor->info.name, i);
  StreamJob job;
  job.input = &in;
  job.plan = [&targets, index, plan](const CheckpointTensor& t) {
    TensorPlan p;
    if (const auto it = index->find(t.info.name); it != index->end()) {
      p.passthrough = false;
      std::tie(p.outputs, p.working_set) = plan(targets[it->second]);
    }
    return p;
  };
  job.compute = [&targets, index, compute, commit](const CheckpointTensor& t, const TensorView& v) {
    TensorResult r;
    auto done = std::make_shared<decltype(compute(targets.front(), v, r.outputs))>(
        compute(targets[index->at(t.info.name)], v, r.outputs));
    r.on_commit = [done, commit] { commit(*done); };
    return r;
  };
  return job;
}

/// `job` with the tensors named in `folded` written nowhere: they are read as part of another
/// tensor's computation (a quantized weight's companions, with the weight they store).
StreamJob folding(StreamJob job, std::set<std::string> folded);

/// Plans every tensor, then streams the checkpoint into `out_dir` with `options`. Returns the
/// files written. Exceptions from compute are rethrown with the file and tensor named.
std::vector<std::string> stream_checkpoint(const StreamJob& job,
                                           const std::filesystem::path& out_dir,
                                           WriterOptions options, const ExecOptions& exec,
                                           const std::string& progress_label);

/// The input's model files (config, generation config, tokenizer, licence: io's copy_files) into
/// the output checkpoint `dir`; with `edit_config`, an existing config.json is rewritten through it
/// instead of copied.
void copy_model_files(const Checkpoint& in, const std::filesystem::path& dir,
                      const std::function<void(nlohmann::json&)>& edit_config = {});

/// Per-shard fingerprints (file, bytes, sha256 of the header) for report inputs.
std::vector<InputFingerprint> fingerprint(const Checkpoint& c);

}  // namespace ckpt
