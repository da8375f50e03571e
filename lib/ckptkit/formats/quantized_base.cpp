#include "ckptkit/formats/quantized_base.hpp"

#include <algorithm>

#include "ckptkit/core/error.hpp"

namespace ckpt {

const QuantizedGroup* QuantizedBase::group_of(const std::string& weight) const {
  const auto it = by_any.find(weight);
  if (it == by_any.end() || groups[it->second].weight != weight) return nullptr;
  return &groups[it->second];
}

const QuantizedGroup* QuantizedBase::group_of_any(const std::string& tensor) const {
  const auto it = by_any.find(tensor);
  return it == by_any.end() ? nullptr : &groups[it->second];
}

Shape QuantizedBase::logical_shape(const std::string& weight) const {
  for (const auto& [n, s] : logical_shapes)
    if (n == weight) return s;
  return {};
}

DType QuantizedBase::original_dtype(const Checkpoint&, const QuantizedGroup& g) const {
  const auto it = dtypes.find(g.weight);
  return it == dtypes.end() ? DType::F32 : it->second;
}

std::size_t QuantizedBase::companion_count() const {
  std::size_t n = 0;
  for (const auto& g : groups)
    n += g.companions.size();
  return n;
}

DequantizedWeight QuantizedBase::dequantize(const Checkpoint& ckpt, const QuantizedGroup& g) const {
  return dequantize_weight(ckpt, g);
}

std::string QuantizedBase::layout_name(const QuantizedGroup& g) const {
  return quant_layout_name(g.layout);
}

std::vector<std::string> QuantizedBase::layout_names() const {
  std::vector<std::string> names;
  for (const auto& g : groups)
    if (std::find(names.begin(), names.end(), layout_name(g)) == names.end())
      names.push_back(layout_name(g));
  return names;
}

QuantizedBase find_quantized_weights(const Checkpoint& ckpt) {
  QuantizedBase q;
  q.groups = quantized_groups(ckpt);
  for (std::size_t i = 0; i < q.groups.size(); ++i) {
    const QuantizedGroup& g = q.groups[i];
    q.by_any[g.weight] = i;
    for (const auto& c : g.companions)
      q.by_any[c] = i;
    // The pre-quantization shape and dtype from the quant_state, without dequantizing.
    const TensorSpec spec = dequantized_spec(ckpt, g);
    q.logical_shapes.emplace_back(g.weight, spec.shape);
    q.dtypes[g.weight] = spec.dtype;
  }
  return q;
}

}  // namespace ckpt
