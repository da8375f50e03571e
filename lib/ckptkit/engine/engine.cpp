#include "ckptkit/engine/engine.hpp"

#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "ckptkit/core/interrupt.hpp"

// ThreadSanitizer cannot see oneTBB's own synchronisation when libtbb is not built with
// -fsanitize=thread (Debian's is not): every hand-off between our filters, tasks and the caller
// would look like a race. Under TSan the engine declares those hand-offs itself (a release where
// TBB publishes work, an acquire where it picks it up), so TSan checks our code with the
// happens-before edges TBB really provides and nothing more. Elsewhere these compile to nothing.
#if defined(__SANITIZE_THREAD__)
#define CKPTKIT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CKPTKIT_TSAN 1
#endif
#endif

#if defined(CKPTKIT_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace ckpt {
namespace {

#if defined(CKPTKIT_TSAN)
void tsan_acquire(const void* sync) {
  __tsan_acquire(const_cast<void*>(sync));
}
void tsan_release(const void* sync) {
  __tsan_release(const_cast<void*>(sync));
}
#else
void tsan_acquire(const void*) {}
void tsan_release(const void*) {}
#endif

/// Declares one task's hand-off to TSan: acquires `from` on entry and releases `to` on exit,
/// also when the task throws (the exception object is read by the thread that rethrows it).
class TsanHandOff {
 public:
  TsanHandOff(const void* from, const void* to) : to_(to) { tsan_acquire(from); }
  ~TsanHandOff() { tsan_release(to_); }
  TsanHandOff(const TsanHandOff&) = delete;
  TsanHandOff& operator=(const TsanHandOff&) = delete;

 private:
  const void* to_;
};

/// Calls `f` when the scope ends, on return or throw.
template <class F>
struct AtScopeEnd {
  F f;
  ~AtScopeEnd() { f(); }
};
template <class F>
AtScopeEnd(F) -> AtScopeEnd<F>;  // clang < 17 has no aggregate deduction

/// After a pipeline has joined: the caller sees every filter's and task's writes.
void acquire_pipeline_end(const char& source, const char& sink, const std::vector<Commit>& slots) {
  tsan_acquire(&source);
  tsan_acquire(&sink);
  for (const Commit& slot : slots)
    tsan_acquire(&slot);
}

}  // namespace

int resolved_threads(const ExecOptions& exec) {
  // More threads than cores cannot help (TBB would cap the arena itself, with a raw warning on
  // stderr); outputs do not depend on the count either way.
  const int cores = std::max(1, tbb::info::default_concurrency());
  return exec.threads > 0 ? std::min(exec.threads, cores) : cores;
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
  // TSan sync points (see TsanHandOff): the caller's set-up → every filter; source call k → call
  // k+1 and item i → its parallel task → the sink; sink call i → call i+1 → the caller.
  // `launch` is static: a task must acquire it before it reads anything its closure holds (a
  // closure member is itself a read of memory the caller wrote), so its address must be a
  // constant, not a captured reference.
  static const char launch = 0;
  const char source = 0, sink = 0;
  // Whether the pipeline returned or threw, the caller then sees every task's writes.
  const AtScopeEnd joined{[&] { acquire_pipeline_end(source, sink, slots); }};
  tbb::task_arena arena(threads);
  arena.execute([&] {
    std::size_t next = 0;
    const auto source_stage = [&](tbb::flow_control& fc) -> std::size_t {
      tsan_acquire(&launch);
      const TsanHandOff order(&source, &source);
      throw_if_interrupted();
      if (next >= n) {
        fc.stop();
        return 0;
      }
      tsan_release(&slots[next]);
      return next++;
    };
    const auto work_stage = [&](std::size_t i) {
      tsan_acquire(&launch);
      const TsanHandOff item(&slots[i], &slots[i]);
      slots[i] = work(i);
      return i;
    };
    const auto sink_stage = [&](std::size_t i) {
      tsan_acquire(&launch);
      tsan_acquire(&slots[i]);
      const TsanHandOff order(&sink, &sink);
      throw_if_interrupted();
      const Commit commit = std::move(slots[i]);
      slots[i] = nullptr;
      if (commit) commit();
    };
    const tbb::filter<void, void> stages =
        tbb::make_filter<void, std::size_t>(tbb::filter_mode::serial_in_order, source_stage) &
        tbb::make_filter<std::size_t, std::size_t>(tbb::filter_mode::parallel, work_stage) &
        tbb::make_filter<std::size_t, void>(tbb::filter_mode::serial_in_order, sink_stage);
    // Released only now: the stages (and `next`), built on this thread, are what every worker
    // reads first; TSan cannot see oneTBB's own hand-off (libtbb is not instrumented).
    tsan_release(&launch);
    tbb::parallel_pipeline(tokens, stages);
  });
}

void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& body) {
  // An isolated context: when the enclosing pipeline is cancelled (another tensor failed, e.g. a
  // full disk), TBB would otherwise skip chunks silently and the caller would go on with
  // half-computed partial results. Every chunk runs; the pipeline stops after this task.
  tbb::task_group_context isolated(tbb::task_group_context::isolated);
  static const char launch = 0;  // static as in run_ordered
  const char done = 0;
  tsan_release(&launch);
  const AtScopeEnd joined{[&] { tsan_acquire(&done); }};
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, n, std::max<std::size_t>(grain, 1)),
      [&](const tbb::blocked_range<std::size_t>& r) {
        const TsanHandOff chunk(&launch, &done);
        body(r.begin(), r.end());
      },
      isolated);
}

}  // namespace ckpt
