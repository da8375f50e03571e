// ckptkit-quant-throughput: the quantizer's throughput in memory against memcpy in the same
// process, the like-for-like half of docs/bench-quantize.md (bench_quantize.py measures the
// whole command, file in to file out).
//
//   ckptkit-quant-throughput [--mb 256] [--threads 0] [--runs 5] [--scheme nf4] [--dq bnb]
//
// Builds --mb MiB of bf16 2048x4096 tensors of N(0, 0.02²) in memory, then times, median of
// --runs each: (1) memcpy of all of it into a second buffer touched beforehand, one thread;
// (2) quant::quantize_bf16 of every tensor with the error statistics the report needs, the
// tensors spread over --threads TBB threads (0 = all cores), every result kept until the run
// ends, as the command keeps them until they are written. Prints one JSON object. The kernels
// run on the active SIMD path (CKPTKIT_SIMD=scalar|avx2|avx512 pins one).
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/core/simd_path.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double median_seconds(int runs, const auto& fn) {
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<std::byte> gaussian_bf16(std::int64_t n, std::uint64_t seed) {
  ckpt::Rng rng(seed, "quant-throughput");
  std::vector<std::byte> out(static_cast<std::size_t>(2 * n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint16_t h = ckpt::f32_to_bf16(0.02f * static_cast<float>(rng.normal()));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int mb = 256, threads = 0, runs = 5;
  std::string scheme = "nf4", dq = "bnb";
  CLI::App app{"quantize_bf16 throughput in memory against memcpy in the same process"};
  app.add_option("--mb", mb, "bf16 MiB in 2048x4096 tensors")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "TBB threads (0 = all cores)");
  app.add_option("--runs", runs, "runs per figure (median)")->check(CLI::PositiveNumber);
  app.add_option("--scheme", scheme, "nf4, nf3, int8, fp4, ...");
  app.add_option("--dq", dq, "double quantization: bnb, lq or none")
      ->check(CLI::IsMember({"bnb", "lq", "none"}));
  CLI11_PARSE(app, argc, argv);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  constexpr std::int64_t kRows = 2048, kCols = 4096, kNumel = kRows * kCols;
  const int count = std::max<int>(1, static_cast<int>((std::int64_t{mb} << 20) / (2 * kNumel)));
  std::vector<std::vector<std::byte>> tensors;
  for (int t = 0; t < count; ++t)
    tensors.push_back(gaussian_bf16(kNumel, static_cast<std::uint64_t>(t)));
  const double bytes = 2.0 * static_cast<double>(kNumel) * count;

  std::vector<std::byte> src, dst(static_cast<std::size_t>(bytes), std::byte{1});
  for (const auto& t : tensors)
    src.insert(src.end(), t.begin(), t.end());
  const double t_copy =
      median_seconds(std::max(runs, 5), [&] { std::memcpy(dst.data(), src.data(), src.size()); });
  src.clear(), src.shrink_to_fit();

  ckpt::quant::QuantSpec spec;
  spec.scheme = ckpt::quant::Scheme::parse(scheme);
  spec.dq = dq == "bnb"  ? ckpt::quant::DoubleQuant::Bnb
            : dq == "lq" ? ckpt::quant::DoubleQuant::Lq
                         : ckpt::quant::DoubleQuant::None;
  tbb::task_arena arena(threads);
  double rel_fro = 0;
  const double t_quant = median_seconds(runs, [&] {
    std::vector<ckpt::quant::QuantizedTensor> out(tensors.size());
    std::vector<ckpt::quant::ErrorStats> err(tensors.size());
    arena.execute([&] {
      tbb::parallel_for(std::size_t{0}, tensors.size(), [&](std::size_t i) {
        out[i] = ckpt::quant::quantize_bf16(tensors[i], spec, &err[i]);
      });
    });
    rel_fro = err[0].rel_fro;
  });

  const nlohmann::json j = {{"tensors", count},
                            {"bytes", bytes},
                            {"threads", threads},
                            {"scheme", spec.scheme.name()},
                            {"double_quant", dq},
                            {"simd", ckpt::simd_path_name(ckpt::active_simd_path())},
                            {"runs", runs},
                            {"memcpy_gbps", bytes / t_copy / 1e9},
                            {"quantize_gbps", bytes / t_quant / 1e9},
                            {"percent_of_memcpy", 100.0 * t_copy / t_quant},
                            {"rel_fro_first_tensor", rel_fro}};
  std::printf("%s\n", j.dump(2).c_str());
}
