// Symmetric eigenproblems in f64 and the Gram matrices that feed them, with no Eigen types in
// the interface (callers stay cheap to compile).
//   gram_f64             G = WᵀW or WWᵀ (the smaller one) of a row-major f32 matrix, in f64:
//                        BLAS dsyrk when built with CKPTKIT_HAVE_LAPACKE, else Eigen's rankUpdate.
//                        Products of two f32 values are exact in f64, so G carries only the f64
//                        rounding of the sums (≈ ε₆₄·√m·‖w_i‖‖w_j‖ per entry).
//   symmetric_eigenvalues / symmetric_eigen
//                        LAPACK dsyevd (Householder tridiagonalisation, then dsterf for values or
//                        divide and conquer for vectors), else Eigen's SelfAdjointEigenSolver.
// Every routine is single-threaded inside (OpenBLAS is pinned to one thread, like linalg/svd.cpp):
// parallelism belongs to the caller (one matrix per task), and a fixed thread count inside keeps
// results bit-identical whatever --threads is.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ckpt {

/// A symmetric k × k matrix, column-major, f64. Routines that fill it write the LOWER triangle
/// (the upper one is unspecified); routines that read it read only the lower triangle.
struct SymMatrix {
  std::int64_t k = 0;
  std::vector<double> a;  ///< k * k, column-major
};

/// The smaller Gram matrix of the row-major rows × cols f32 matrix `w`: WᵀW (cols × cols) when
/// rows ≥ cols, else WWᵀ (rows × rows). Lower triangle only.
SymMatrix gram_f64(std::span<const float> w, std::int64_t rows, std::int64_t cols);

/// Eigenvalues of `g` in ascending order (g's storage is used as workspace and destroyed).
/// Throws Error(Numeric) when the solver does not converge.
std::vector<double> symmetric_eigenvalues(SymMatrix&& g);

/// Eigenvalues in ascending order; on return g.a holds the orthonormal eigenvectors, column j
/// belonging to eigenvalue j. Throws Error(Numeric) when the solver does not converge.
std::vector<double> symmetric_eigen(SymMatrix& g);

/// Which backend the eigensolvers use ("lapacke-dsyevd" or "eigen-selfadjoint").
const char* symeig_backend();

}  // namespace ckpt
