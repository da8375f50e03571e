#include "ckptkit/core/tensor_math.hpp"

#include <cmath>

#include "ckptkit/core/error.hpp"

namespace ckpt {

std::vector<float> transpose(const std::vector<float>& a, std::int64_t rows, std::int64_t cols) {
  std::vector<float> t(a.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      t[static_cast<std::size_t>(c * rows + r)] = a[static_cast<std::size_t>(r * cols + c)];
  return t;
}

void check_finite(const std::vector<float>& w, const std::string& file, const std::string& name) {
  for (std::size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]))
      fail(ErrorKind::Format, located(file, name,
                                      std::string(std::isnan(w[i]) ? "NaN" : "Inf") +
                                          " at element " + std::to_string(i)));
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
