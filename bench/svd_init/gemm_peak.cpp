// Eigen's own single-threaded GEMM throughput on the randomized SVD's product shapes, built by
// bench/svd_init/run.sh with the project's flags (-O3 -march=native, EIGEN_DONT_PARALLELIZE).
// usage: gemm_peak M K N [reps]   prints "gemm M K N GFLOP/s" (median of reps), timed by thread
// CPU time (CLOCK_THREAD_CPUTIME_ID) so that other processes on a shared machine do not deflate it.
#include <time.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  const long m = std::atol(argv[1]), k = std::atol(argv[2]), n = std::atol(argv[3]);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 7;
  // A row-major like a safetensors weight, as the randomized SVD multiplies it.
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> a =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>::Random(m, k);
  Eigen::MatrixXf b = Eigen::MatrixXf::Random(k, n), c(m, n);
  c.noalias() = a * b;
  std::vector<double> rates;
  for (int i = 0; i < reps; ++i) {
    const double t0 = cpu();
    c.noalias() = a * b;
    const double s = cpu() - t0;
    rates.push_back(2.0 * m * k * n / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("gemm %ld %ld %ld %.1f\n", m, k, n, rates[rates.size() / 2]);
  return c(0, 0) == 12345.f;  // keep the product alive
}
