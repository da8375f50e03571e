#include "ckptkit/core/tensor.hpp"

#include "ckptkit/core/error.hpp"

namespace ckpt {

std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape)
    n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

OwnedTensor make_tensor(std::string name, DType dtype, Shape shape, std::span<const float> values) {
  CKPT_ASSERT(static_cast<std::int64_t>(values.size()) == numel(shape));
  OwnedTensor t{std::move(name), dtype, std::move(shape), {}};
  t.bytes.resize(values.size() * dtype_size(dtype));
  encode_from_f32(dtype, values, t.bytes);
  return t;
}

std::vector<float> to_f32(const TensorView& view) {
  std::vector<float> out(static_cast<std::size_t>(view.numel()));
  decode_to_f32(view.dtype, view.bytes, out);
  return out;
}

}  // namespace ckpt
