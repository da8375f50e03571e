// Per-phase CPU time of svd-init's per-tensor work on one weight of a checkpoint, single thread
// (thread CPU time, so other processes on a shared machine do not inflate it). Built by hand
// against a build directory's static libraries (see docs/bench-svd-init.md):
//   phases CKPT TENSOR [rank] [reps]
// Phases: decode (bytes -> f32 + NaN/Inf check), norm (‖W‖²_F), svd (svd_init_matrix with the
// randomized SVD, P=10, N=4, factors included; GFLOP/s = flops of the 2N+2 products with W over
// this phase's CPU time), residual (W − s·B·A, cast into the output bytes, error statistics).
// -DCKPT_PHASES_OLD builds the loop the first version used (per-entry scalar cast + statistics),
// for before/after numbers against that version's libraries.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/decompose/pissa.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/linalg/svd.hpp"

using namespace ckpt;

static double cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

#ifdef CKPT_PHASES_OLD
static double ulp_of(DType dtype, float x) {
  const int mant = dtype == DType::BF16 ? 7 : dtype == DType::F16 ? 10 : 23;
  const int emin = dtype == DType::F16 ? -14 : -126;
  std::uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const int e = std::max(static_cast<int>((bits >> 23) & 0xffu) - 127, emin);
  return std::ldexp(1.0, e - mant);
}
// The first version's per-entry helpers (BF16/F16/F32 only here).
static float encode_one(DType dtype, float x, std::byte* dst) {
  if (dtype == DType::BF16) {
    const std::uint16_t h = f32_to_bf16(x);
    std::memcpy(dst, &h, 2);
    return bf16_to_f32(h);
  }
  if (dtype == DType::F16) {
    const std::uint16_t h = f32_to_f16(x);
    std::memcpy(dst, &h, 2);
    return f16_to_f32(h);
  }
  std::memcpy(dst, &x, 4);
  return x;
}
static float decode_one(DType dtype, const std::byte* src) {
  if (dtype == DType::F32) {
    float f;
    std::memcpy(&f, src, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, src, 2);
  return dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}
#endif

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: phases CKPT TENSOR [rank] [reps]\n");
    return 2;
  }
  const int rank = argc > 3 ? std::atoi(argv[3]) : 16;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  const Checkpoint ck = Checkpoint::open(argv[1]);
  const CheckpointTensor* t = ck.find(argv[2]);
  if (!t) return 2;
  const TensorView view = ck.view(*t);
  const std::int64_t m = t->info.shape[0], n = t->info.shape[1];
  for (int rep = 0; rep < reps; ++rep) {
    double t0 = cpu();
    std::vector<float> w = to_f32(view);
    check_finite(w, "f", t->info.name);
    const double decode = cpu() - t0;
    t0 = cpu();
    volatile double norm = frobenius_sq(w);
    (void)norm;
    const double norm_s = cpu() - t0;
    SvdInitParams p;
    p.algorithm = SvdAlgorithm::Randomized;
    p.rank = rank;
    t0 = cpu();
    SvdInitResult r = svd_init_matrix(w, m, n, p, t->info.name);
    const double svd = cpu() - t0;
    t0 = cpu();
    std::vector<std::byte> out(view.bytes.size());
    double err_sq = 0, max_abs = 0;
#ifdef CKPT_PHASES_OLD
    subtract_adapter_delta(w, r, m, n);
    double max_ulps = 0;
    std::size_t within = 0;
    const std::size_t sz = dtype_size(view.dtype);
    for (std::size_t j = 0; j < w.size(); ++j) {
      const float res = w[j];
      const float stored = encode_one(view.dtype, res, out.data() + j * sz);
      const float orig = decode_one(view.dtype, view.bytes.data() + j * sz);
      err_sq += static_cast<double>(res) * res;
      const double e = std::fabs(static_cast<double>(stored) - res);
      max_abs = std::max(max_abs, e);
      const double u = e / ulp_of(view.dtype, orig);
      max_ulps = std::max(max_ulps, u);
      within += u <= 1.0;
      max_ulps = std::max(max_ulps, e / ulp_of(view.dtype, stored));
    }
#else
    const ResidualStats st =
        residual_in_place(w, r, m, n, false, {view.dtype, view.bytes, view.dtype, out});
    err_sq = st.err_sq;
    max_abs = st.max_abs;
#endif
    const double residual = cpu() - t0;
    std::printf(
        "%s %lldx%lld rank %d: decode %.3f norm %.3f svd %.3f (%.1f GFLOP/s: product flops over "
        "the whole SVD's CPU time) residual %.3f total %.3f cpu-s; rel err %.5f max_abs %.3g\n",
        t->info.name.c_str(), static_cast<long long>(m), static_cast<long long>(n), rank, decode,
        norm_s, svd, r.gemm_flops / svd / 1e9, residual, decode + norm_s + svd + residual,
        std::sqrt(err_sq / r.norm_sq), max_abs);
  }
  return 0;
}
