// Times Checkpoint::open (header or index parse, validation, the name index) on a path, best of N
// runs, and prints the process's peak RSS: bench/parse/run.py drives it on a 10⁶-tensor header and
// a 10⁵-entry index (issue #21's targets: < 2 s each).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "ckptkit/io/checkpoint.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ckptkit-header-parse PATH [RUNS]\n");
    return 2;
  }
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  double best = 1e30;
  std::size_t tensors = 0;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto c = ckpt::Checkpoint::open(argv[1]);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    tensors = c.tensors().size();
  }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  std::printf(
      "{\"path\": \"%s\", \"tensors\": %zu, \"best_seconds\": %.3f, \"peak_rss_mib\": %.0f}\n",
      argv[1], tensors, best, static_cast<double>(u.ru_maxrss) / 1024.0);
}
