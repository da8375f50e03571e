// Streaming a checkpoint through the engine: each input tensor is either passed through
// byte for byte (zero-copy from the mmap to the output file) or computed into new tensors.
// Outputs are planned before any work starts, so the writer can stream them in order.
#pragma once

#include <functional>
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

/// Plans every tensor, then streams the checkpoint into `out_dir` with `options`. Returns the
/// files written. Exceptions from compute are rethrown with the file and tensor named.
std::vector<std::string> stream_checkpoint(const StreamJob& job,
                                           const std::filesystem::path& out_dir,
                                           WriterOptions options, const ExecOptions& exec,
                                           const std::string& progress_label);

/// Per-shard fingerprints (file, bytes, sha256 of the header) for report inputs.
std::vector<InputFingerprint> fingerprint(const Checkpoint& c);

}  // namespace ckpt
