// Single-threaded GEMM throughput on the randomized SVD's product shapes and the square peak, by
// Eigen (built with the flags run.py passes: -O3 -march=..., EIGEN_DONT_PARALLELIZE) and by
// OpenBLAS's cblas_sgemm (its own run-time kernel choice; OPENBLAS_CORETYPE pins one).
// usage: gemm_peak M K N [reps]   prints "gemm M K N EIGEN OPENBLAS" (GFLOP/s, median of reps),
// timed by thread CPU time (CLOCK_THREAD_CPUTIME_ID) so that other processes on a shared machine
// do not deflate it.
#include <cblas.h>
#include <time.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" void openblas_set_num_threads(int);

static double cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

template <class F>
static double rate(double flops, int reps, F&& f) {
  f();  // warm-up
  std::vector<double> rates;
  for (int i = 0; i < reps; ++i) {
    const double t0 = cpu();
    f();
    rates.push_back(flops / (cpu() - t0) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  const long m = std::atol(argv[1]), k = std::atol(argv[2]), n = std::atol(argv[3]);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 7;
  openblas_set_num_threads(1);
  // A row-major like a safetensors weight, as the randomized SVD multiplies it.
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMat a = RowMat::Random(m, k);
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(k, n);
  Eigen::MatrixXf c(m, n);
  const double flops = 2.0 * m * k * n;
  const double eigen = rate(flops, reps, [&] { c.noalias() = a * b; });
  const double openblas = rate(flops, reps, [&] {
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), k,
                0.0f, c.data(), m);
  });
  std::printf("gemm %ld %ld %ld %.1f %.1f\n", m, k, n, eigen, openblas);
  return c(0, 0) == 12345.f;  // keep the product alive
}
