// merge's view of a quantized base checkpoint (quant_layout.hpp): which tensors belong to which
// quantized weight, and each weight's logical (pre-quantization) shape and dtype, so that merge
// can plan the dequantized float output before streaming.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/checkpoint.hpp"

namespace ckpt {

struct QuantizedBase {
  std::vector<QuantizedGroup> groups;
  /// weight name → shape before quantization (the shape adapters are checked against).
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> logical_shapes;
  std::map<std::string, DType> dtypes;        ///< weight name → dtype before quantization
  std::map<std::string, std::size_t> by_any;  ///< weight or companion name → group index

  /// The group whose main tensor is `weight`, or nullptr.
  const QuantizedGroup* group_of(const std::string& weight) const;
  /// The group `tensor` belongs to (main tensor or companion), or nullptr.
  const QuantizedGroup* group_of_any(const std::string& tensor) const;
  Shape logical_shape(const std::string& weight) const;
  DType original_dtype(const Checkpoint& ckpt, const QuantizedGroup& g) const;
  std::size_t companion_count() const;
  /// The weight dequantized to f32 with its original shape and dtype.
  DequantizedWeight dequantize(const Checkpoint& ckpt, const QuantizedGroup& g) const;
  /// "bnb-4bit", "bnb-int8", "ckptkit" (for reports).
  std::string layout_name(const QuantizedGroup& g) const;
  /// The distinct layout names of all groups, in first-seen order (for reports).
  std::vector<std::string> layout_names() const;
};

/// Finds every quantized weight of `ckpt` (none for a float checkpoint).
QuantizedBase find_quantized_weights(const Checkpoint& ckpt);

}  // namespace ckpt
