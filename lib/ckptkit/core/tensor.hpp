// Non-owning views of tensor bytes, and owned f32 tensors for computing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"

namespace ckpt {

/// Dimensions in safetensors order, outermost first ([out, in] for a linear weight).
using Shape = std::vector<std::int64_t>;

/// Number of elements of a shape (1 for a scalar shape []).
std::int64_t numel(const Shape& shape);
/// "[384, 1536]".
std::string shape_str(const Shape& shape);

/// A tensor's bytes where they live (an mmap, a decompressed buffer): valid while its owner lives.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::span<const std::byte> bytes;

  std::int64_t numel() const { return ckpt::numel(shape); }
};

/// A tensor with owned bytes, as produced by a transformation.
struct OwnedTensor {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::vector<std::byte> bytes;

  TensorView view() const { return {name, dtype, shape, bytes}; }
};

/// Makes an OwnedTensor of dtype `dtype` from f32 values (rounding to nearest even).
OwnedTensor make_tensor(std::string name, DType dtype, Shape shape, std::span<const float> values);
/// Decodes any float view into f32 values.
std::vector<float> to_f32(const TensorView& view);

}  // namespace ckpt
