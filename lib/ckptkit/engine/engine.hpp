// The per-layer engine every subcommand runs on: a serial in-order source, a parallel stage that
// works on one tensor per task, and a serial in-order sink (oneTBB parallel_pipeline). The number
// of tasks in flight is bounded by the memory budget divided by the largest task's working set, so
// peak memory does not grow with the model. This is the only folder that includes TBB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "ckptkit/core/progress.hpp"

namespace ckpt {

class ShardRun;  // engine/shard.hpp

struct ExecOptions {
  int threads = 0;                  // 0: all cores
  std::uint64_t memory_budget = 0;  // bytes of working set in flight; 0: 2 tasks per thread
  bool progress = true;             // progress bar on stderr when it is a terminal
  /// --shard K/N: this run computes 1/N of the targets into a partial output (null: all).
  std::shared_ptr<ShardRun> shard;
};

/// What the parallel stage hands to the sink: run serially, in item order.
using Commit = std::function<void()>;

/// Runs `work(i)` for i in [0, n) on up to `threads` cores and the Commit each returns in order
/// 0..n-1. `working_set(i)` is the bytes item i needs while in flight. Stops between items on
/// SIGINT/SIGTERM (Error(Interrupted)); the first exception of any stage is rethrown here.
void run_ordered(std::size_t n, const std::function<std::uint64_t(std::size_t)>& working_set,
                 const std::function<Commit(std::size_t)>& work, const ExecOptions& exec);

/// Tasks in flight for a budget: clamp(budget / largest, 1, 2 * threads).
std::size_t tokens_for_budget(std::uint64_t budget, std::uint64_t largest, int threads);

/// The thread count `exec` resolves to.
int resolved_threads(const ExecOptions& exec);

/// Parallel loop for the inside of one large task (GEMM column blocks): runs body(begin, end)
/// over [0, n) in chunks of at least `grain`, on the current arena.
void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& body);

}  // namespace ckpt
