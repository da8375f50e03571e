#include "ckptkit/core/tensor_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {

std::vector<float> transpose(const std::vector<float>& a, std::int64_t rows, std::int64_t cols) {
  std::vector<float> t(a.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      t[static_cast<std::size_t>(c * rows + r)] = a[static_cast<std::size_t>(r * cols + c)];
  return t;
}

bool all_finite(std::span<const float> w) {
  // OR of "exponent all ones" over blocks: no early exit inside a block, so the loop vectorizes;
  // the first bad element is only searched for when a block has one.
  constexpr std::size_t kBlock = 4096;
  const float* p = w.data();
  for (std::size_t b0 = 0; b0 < w.size(); b0 += kBlock) {
    const std::size_t len = std::min(kBlock, w.size() - b0);
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < len; ++i) {
      std::uint32_t u;
      std::memcpy(&u, p + b0 + i, 4);
      bad |= (u & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
    }
    if (bad) return false;
  }
  return true;
}

void check_finite(std::span<const float> w, const std::string& file, const std::string& name) {
  if (all_finite(w)) return;
  for (std::size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]))
      fail(ErrorKind::Format, located(file, name,
                                      std::string(std::isnan(w[i]) ? "NaN" : "Inf") +
                                          " at element " + std::to_string(i)));
}

void check_computed_finite(std::span<const float> w, const std::string& file,
                           const std::string& name, const std::string& what) {
  if (all_finite(w)) return;
  for (std::size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]))
      fail(ErrorKind::Numeric,
           located(file, name,
                   what + " is not finite (" + (std::isnan(w[i]) ? "NaN" : "Inf") + " at element " +
                       std::to_string(i) + ")"));
}

void check_cast_finite(DType from, std::span<const std::byte> in, DType to,
                       std::span<const std::byte> out, const std::string& file,
                       const std::string& name) {
  if (!is_float(from) || !is_float(to)) return;
  const std::size_t a = dtype_size(from), b = dtype_size(to);
  const std::size_t n = in.size() / a;
  constexpr std::size_t kChunk = 16384;
  std::vector<double> x(kChunk), y(kChunk);
  for (std::size_t c0 = 0; c0 < n; c0 += kChunk) {
    const std::size_t len = std::min(kChunk, n - c0);
    decode_to_f64(to, out.subspan(c0 * b, len * b), std::span<double>(y.data(), len));
    bool ok = true;
    for (std::size_t i = 0; i < len; ++i)
      ok = ok && std::isfinite(y[i]);
    if (ok) continue;
    decode_to_f64(from, in.subspan(c0 * a, len * a), std::span<double>(x.data(), len));
    for (std::size_t i = 0; i < len; ++i)
      if (std::isfinite(x[i]) && !std::isfinite(y[i]))
        fail(ErrorKind::Format,
             located(file, name,
                     "value " + strprintf("%.9g", x[i]) + " at element " + std::to_string(c0 + i) +
                         " overflows " + std::string(dtype_name(to)) +
                         " (cast it to a wider type)"));
  }
}

void check_finite(const std::vector<float>& w, const std::string& file, const std::string& name) {
  check_finite(std::span<const float>(w), file, name);
}

void round_to(DType dtype, std::vector<float>& v) {
  if (dtype == DType::F32 || v.empty()) return;
  std::vector<std::byte> bytes(v.size() * dtype_size(dtype));
  encode_from_f32(dtype, v, bytes);
  decode_to_f32(dtype, bytes, v);
}

double sum_sq(const std::vector<float>& v) {
  double s = 0;
  for (float x : v)
    s += static_cast<double>(x) * x;
  return s;
}

}  // namespace ckpt
