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

/// For values ckptkit computed (not read): a Numeric error (exit 1) "<file>: tensor '<name>':
/// <what> is not finite (NaN at element i)" at the first non-finite value.
void check_computed_finite(std::span<const float> w, const std::string& file,
                           const std::string& name, const std::string& what);

/// After a cast of `in` (dtype `from`) into `out` (dtype `to`): a Format error (exit 2) "<file>:
/// tensor '<name>': value V at element i overflows <to>" at the first value finite before and
/// not after (f16's range ends at 65504). Checked in chunks; no allocation of the whole tensor.
void check_cast_finite(DType from, std::span<const std::byte> in, DType to,
                       std::span<const std::byte> out, const std::string& file,
                       const std::string& name);

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
