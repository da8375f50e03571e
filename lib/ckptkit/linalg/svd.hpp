// Thin SVDs of f32 matrices held as row-major buffers (the safetensors layout of a [out, in]
// weight), with no Eigen types in the interface so that callers stay cheap to compile.
//   exact_svd       LAPACKE sgesdd (jobz 'S') when built with CKPTKIT_HAVE_LAPACKE, else Eigen
//                   BDCSVD
//   randomized_svd  Halko-Martinsson-Tropp Alg. 4.4 + 5.1: Gaussian test matrix Ω with r+P
//                   columns (ckpt::Rng, so the result depends only on seed and stream name), N
//                   subspace iterations on the smaller side's Gram matrix (m ≥ n: Z ← orth(AᵀA·Z)
//                   from Z = Ω, then Q = orth(A·Z); m < n: Q = orth(A·Ω), Q ← orth(AAᵀ·Q)), a
//                   Householder QR after every Gram product, each Gram product one fused pass over
//                   A by panels; then QR(AᵀQ) and the SVD of the small R. span Q = span
//                   (AAᵀ)^N·A·Ω as in Alg. 4.4; the 2N+2 products with A cost N+2 passes.
//   jacobi_singular_values_f64  independent f64 reference for tests.
// Every routine is single-threaded inside; the only parallelism is the optional ParallelFor hook,
// which the pipeline layer fills with its TBB-based parallel_chunks.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ckpt {

/// A parallel loop supplied by the caller: runs body(begin, end) over [0, n) in chunks of at
/// least `grain`. Empty: run serially.
using ParallelFor = std::function<void(std::size_t n, std::size_t grain,
                                       const std::function<void(std::size_t, std::size_t)>& body)>;

/// W ≈ U · diag(S) · Vt with U m×k and Vt k×n, both row-major, S descending.
struct SvdResult {
  std::int64_t m = 0, n = 0, k = 0;
  std::vector<float> U;   // m * k, row-major
  std::vector<float> S;   // k
  std::vector<float> Vt;  // k * n, row-major
};

/// Exact thin SVD (k = min(m, n)) of the row-major m×n matrix `w`.
/// Throws Error(Numeric) when the SVD does not converge.
SvdResult exact_svd(std::span<const float> w, std::int64_t m, std::int64_t n);

/// Singular values only (exact), descending.
std::vector<float> exact_singular_values(std::span<const float> w, std::int64_t m, std::int64_t n);

struct RsvdOptions {
  int rank = 16;        // triplets wanted
  int oversample = 10;  // P: extra columns of the test matrix (sklearn's default)
  int niter = 4;        // N: power (subspace) iterations
  std::uint64_t seed = 0;
  std::string stream;    // Rng stream name (the tensor name): same inputs, same bits
  ParallelFor parallel;  // optional: splits the big products over fixed output row blocks
};

/// Randomized SVD result: the first `rank` triplets plus what was left of the sketch.
struct RsvdResult {
  SvdResult svd;                    // k = rank triplets
  std::vector<float> sketch_sigma;  // all l = rank + P singular values of the sketch (σ̂_{r+1} etc.)
  double captured_sq = 0;           // ‖QᵀW‖²_F: energy inside the sketch's range (f64 sum)
  double gemm_flops = 0;            // flops spent in the products with W (for GFLOP/s reports)
  double gemm_seconds = 0;          // wall time of those products
};

/// Randomized SVD of the row-major m×n matrix `w` (Halko et al. 2011, Alg. 4.4 + 5.1).
/// l = min(rank + oversample, min(m, n)). Results are bit-identical for any ParallelFor split:
/// the products are cut into fixed row blocks of the output that depend only on the shape.
RsvdResult randomized_svd(std::span<const float> w, std::int64_t m, std::int64_t n,
                          const RsvdOptions& options);

/// Singular values by Eigen's one-sided JacobiSVD in f64: slow, accurate, independent of the
/// f32 paths above. For tests.
std::vector<double> jacobi_singular_values_f64(std::span<const float> w, std::int64_t m,
                                               std::int64_t n);

/// C = A · B for row-major A (m×k) and B (k×n), f32, single-threaded Eigen GEMM.
std::vector<float> matmul(std::span<const float> a, std::span<const float> b, std::int64_t m,
                          std::int64_t k, std::int64_t n);

/// C −= scale · A · B in place, C row-major m×n, A m×k, B k×n (row-major), split like the
/// randomized SVD's products over fixed output row blocks (bit-identical for any split).
void subtract_product(std::span<float> c, std::span<const float> a, std::span<const float> b,
                      std::int64_t m, std::int64_t k, std::int64_t n, float scale,
                      const ParallelFor& parallel = {});

/// Number of the fixed row blocks (kRowBlock = 512 rows) that subtract_product and the randomized
/// SVD split an m-row matrix into: the unit of parallel work and of deterministic reductions.
std::size_t row_block_count(std::int64_t m);

/// Visitor of subtract_product_visit: `block` is the fixed row block's index, rows [r0, r0+rows)
/// of C are final (C −= s·A·B applied) and still hot in cache.
using RowPanelVisitor = std::function<void(std::size_t block, std::int64_t r0, std::int64_t rows)>;

/// subtract_product, done in small row panels inside each fixed row block, calling
/// `visit(block, r0, rows)` on each panel right after its product so that a following pass over
/// the panel (cast, statistics) reads it from cache instead of memory. Panels of one block are
/// visited in increasing r0 order by one thread; blocks may run in parallel. Bit-identical for
/// any split.
void subtract_product_visit(std::span<float> c, std::span<const float> a, std::span<const float> b,
                            std::int64_t m, std::int64_t k, std::int64_t n, float scale,
                            const ParallelFor& parallel, const RowPanelVisitor& visit);

/// Squared Frobenius norm accumulated in f64.
double frobenius_sq(std::span<const float> w);

/// Which backend exact_svd uses ("lapacke-sgesdd" or "eigen-bdcsvd").
const char* exact_svd_backend();

/// Measures Eigen's single-threaded GEMM throughput (GFLOP/s, median of `reps`) on an m×k by k×n
/// product, the same shape class as the randomized SVD's products. For benchmark reports.
double eigen_gemm_gflops(std::int64_t m, std::int64_t k, std::int64_t n, int reps = 5);

}  // namespace ckpt
