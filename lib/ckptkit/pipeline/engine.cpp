#include "ckptkit/pipeline/engine.hpp"

#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "ckptkit/core/interrupt.hpp"

namespace ckpt {

int resolved_threads(const ExecOptions& exec) {
  return exec.threads > 0 ? exec.threads : std::max(1, tbb::info::default_concurrency());
}

std::size_t tokens_for_budget(std::uint64_t budget, std::uint64_t largest, int threads) {
  const std::size_t max_tokens = static_cast<std::size_t>(2 * std::max(1, threads));
  if (budget == 0) return max_tokens;
  const std::uint64_t per = std::max<std::uint64_t>(largest, 1);
  return std::clamp<std::size_t>(static_cast<std::size_t>(budget / per), 1, max_tokens);
}

void run_ordered(std::size_t n, const std::function<std::uint64_t(std::size_t)>& working_set,
                 const std::function<Commit(std::size_t)>& work, const ExecOptions& exec) {
  if (n == 0) return;
  const int threads = resolved_threads(exec);
  std::uint64_t largest = 0;
  for (std::size_t i = 0; i < n; ++i)
    largest = std::max(largest, working_set(i));
  const std::size_t tokens = tokens_for_budget(exec.memory_budget, largest, threads);

  // Commits live in per-item slots rather than in the items TBB passes between filters: when a
  // stage throws, oneTBB cancels the pipeline without destroying items still in flight, which
  // leaked their tensors (seen under ASan). The slots are owned here and freed on every path.
  std::vector<Commit> slots(n);
  tbb::task_arena arena(threads);
  arena.execute([&] {
    std::size_t next = 0;
    tbb::parallel_pipeline(
        tokens, tbb::make_filter<void, std::size_t>(tbb::filter_mode::serial_in_order,
                                                    [&](tbb::flow_control& fc) -> std::size_t {
                                                      throw_if_interrupted();
                                                      if (next >= n) {
                                                        fc.stop();
                                                        return 0;
                                                      }
                                                      return next++;
                                                    }) &
                    tbb::make_filter<std::size_t, std::size_t>(tbb::filter_mode::parallel,
                                                               [&](std::size_t i) {
                                                                 slots[i] = work(i);
                                                                 return i;
                                                               }) &
                    tbb::make_filter<std::size_t, void>(tbb::filter_mode::serial_in_order,
                                                        [&](std::size_t i) {
                                                          throw_if_interrupted();
                                                          const Commit commit = std::move(slots[i]);
                                                          slots[i] = nullptr;
                                                          if (commit) commit();
                                                        }));
  });
}

void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& body) {
  // An isolated context: when the enclosing pipeline is cancelled (another tensor failed, e.g. a
  // full disk), TBB would otherwise skip chunks silently and the caller would go on with
  // half-computed partial results. Every chunk runs; the pipeline stops after this task.
  tbb::task_group_context isolated(tbb::task_group_context::isolated);
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, n, std::max<std::size_t>(grain, 1)),
      [&](const tbb::blocked_range<std::size_t>& r) { body(r.begin(), r.end()); }, isolated);
}

}  // namespace ckpt
