#pragma once
/// Small element-wise helpers on f32 tensors shared by the subcommands (transpose of Conv1D
/// storage, NaN/Inf checks, rounding through a stored dtype, byte views).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"

namespace ckpt {

/// Transpose of a row-major [rows, cols] matrix, returned as row-major [cols, rows].
std::vector<float> transpose(const std::vector<float>& a, std::int64_t rows, std::int64_t cols);

/// Throws a Format error "<file>: tensor '<name>': NaN|Inf at element i" at the first non-finite
/// value of `w`.
void check_finite(const std::vector<float>& w, const std::string& file, const std::string& name);
/// The same for any contiguous range of floats.
void check_finite(std::span<const float> w, const std::string& file, const std::string& name);

/// True when every value of `w` is finite (a branch-free, vectorizable scan).
bool all_finite(std::span<const float> w);

/// Rounds values in place to what `dtype` stores (round to nearest even; identity for f32).
void round_to(DType dtype, std::vector<float>& v);

/// Σ x² accumulated in double (squared Frobenius norm).
double sum_sq(const std::vector<float>& v);

/// The raw bytes of a vector of trivially copyable values.
template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace ckpt
