// The engine: in-order commits for any thread count, bounded tasks in flight, errors propagate.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/engine/engine.hpp"

using namespace ckpt;

TEST_CASE("run_ordered commits strictly in order for many thread counts", "[engine]") {
  for (int threads : {1, 2, 3, 4, 7, 16}) {
    for (std::uint64_t budget : {0ull, 1ull, 5000ull}) {
      INFO("threads " << threads << ", budget " << budget);
      const std::size_t n = 97;
      std::vector<std::size_t> order;
      std::atomic<int> in_flight{0}, max_in_flight{0};
      ExecOptions exec;
      exec.threads = threads;
      exec.memory_budget = budget;
      run_ordered(
          n, [](std::size_t i) { return 1000 + i; },
          [&](std::size_t i) -> Commit {
            const int now = ++in_flight;
            int prev = max_in_flight.load();
            while (now > prev && !max_in_flight.compare_exchange_weak(prev, now)) {
            }
            // Uneven work so later items often finish first.
            Rng r(i, "sleep");
            std::this_thread::sleep_for(std::chrono::microseconds(r.next_u64() % 300));
            return [&, i] {
              order.push_back(i);
              --in_flight;
            };
          },
          exec);
      REQUIRE(order.size() == n);
      bool sorted = true;
      for (std::size_t i = 0; i < n; ++i)
        sorted = sorted && order[i] == i;
      CHECK(sorted);
      const auto tokens = tokens_for_budget(budget, 1000 + n - 1, threads);
      INFO("max in flight " << max_in_flight.load() << ", tokens " << tokens);
      CHECK(static_cast<std::size_t>(max_in_flight.load()) <= tokens);
    }
  }
}

TEST_CASE("run_ordered: a null commit is skipped, n = 0 does nothing", "[engine]") {
  int commits = 0;
  run_ordered(
      10, [](std::size_t) { return 0; },
      [&](std::size_t i) -> Commit {
        if (i % 2) return {};
        return [&] { ++commits; };
      },
      {});
  CHECK(commits == 5);
  run_ordered(
      0, [](std::size_t) { return 0; },
      [&](std::size_t) -> Commit {
        FAIL("called");
        return {};
      },
      {});
}

TEST_CASE("an exception in a task or a commit propagates and stops the run", "[engine]") {
  for (int threads : {1, 2, 4}) {
    INFO("threads " << threads);
    std::atomic<int> started{0};
    ExecOptions exec;
    exec.threads = threads;
    try {
      run_ordered(
          1000, [](std::size_t) { return 1; },
          [&](std::size_t i) -> Commit {
            ++started;
            if (i == 5) fail(ErrorKind::Numeric, "task 5 failed");
            return [] {};
          },
          exec);
      FAIL("no exception");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Numeric);
      CHECK(std::string(e.what()) == "task 5 failed");
    }
    CHECK(started.load() < 1000);  // cancelled, not run to the end
    std::vector<std::size_t> committed;
    CHECK_THROWS_AS(run_ordered(
                        50, [](std::size_t) { return 1; },
                        [&](std::size_t i) -> Commit {
                          return [&, i] {
                            if (i == 20) throw std::runtime_error("commit 20");
                            committed.push_back(i);
                          };
                        },
                        exec),
                    std::runtime_error);
    CHECK(committed.size() == 20);
  }
}

TEST_CASE("tokens_for_budget: clamp(budget / largest, 1, 2 * threads)", "[engine]") {
  CHECK(tokens_for_budget(0, 100, 4) == 8);
  CHECK(tokens_for_budget(1000, 100, 4) == 8);
  CHECK(tokens_for_budget(500, 100, 4) == 5);
  CHECK(tokens_for_budget(99, 100, 4) == 1);
  CHECK(tokens_for_budget(1, 0, 1) == 1);
  CHECK(tokens_for_budget(1ull << 40, 1, 0) == 2);
  CHECK(tokens_for_budget(1ull << 30, 64ull << 20, 2) == 4);
  ExecOptions e;
  e.threads = 0;
  const int cores = resolved_threads(e);
  CHECK(cores >= 1);
  e.threads = 1;
  CHECK(resolved_threads(e) == 1);
  e.threads = cores + 5;  // more than the cores: as many as there are
  CHECK(resolved_threads(e) == cores);
}

TEST_CASE("parallel_chunks covers 0..n exactly once", "[engine]") {
  for (std::size_t n : {0u, 1u, 10u, 1000u}) {
    std::vector<std::atomic<int>> hits(n);
    std::atomic<std::size_t> calls{0};
    parallel_chunks(n, 7, [&](std::size_t b, std::size_t e) {
      ++calls;
      CHECK(b < e);
      for (std::size_t i = b; i < e; ++i)
        ++hits[i];
    });
    int bad = 0;
    for (auto& h : hits)
      bad += h.load() != 1;
    INFO("n " << n);
    CHECK(bad == 0);
  }
}
