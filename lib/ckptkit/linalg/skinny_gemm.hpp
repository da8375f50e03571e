// Products of a big row-major matrix A with a skinny one (the l = rank + oversample columns of
// the randomized SVD's sketch), written once over Google Highway for every SIMD path
// (core/simd_path.hpp). The skinny operands are row-major with a row stride `ld` of l rounded up to
// 16 (skinny_stride), so one row is whole vectors on every path.
//
// Each output element is one chain of fused multiply-adds in a fixed order (the inner index
// ascending, starting from zero or from the output's value), whatever the path or its vector
// width: vectors run across the l columns, never along the sum. So every path gives the same
// bytes, and the scalar code (std::fma) is the reference.
#pragma once

#include <cstdint>

#include "ckptkit/core/simd_path.hpp"

namespace ckpt {

/// The row stride of a skinny operand with l columns: l rounded up to 16.
std::int64_t skinny_stride(std::int64_t l);

/// y[i][c] = (accumulate ? y[i][c] : 0) + sum over k < inner of a[i·lda + k] · b[k][c], for
/// i < rows, c < l; b and y have row stride ld = skinny_stride(l), columns l..ld of b are zero.
void skinny_nn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t inner,
               const float* b, std::int64_t l, std::int64_t ld, float* y, bool accumulate,
               SimdPath path = active_simd_path());

/// y[k][c] += sum over i < rows of a[i·lda + k] · b[i][c], for k < cols, c < l (Y = Y + Aᵀ·B
/// with A the rows × cols block at a); the same strides as skinny_nn.
void skinny_tn(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t cols,
               const float* b, std::int64_t l, std::int64_t ld, float* y,
               SimdPath path = active_simd_path());

}  // namespace ckpt
