// Quantized weights on disk: the tensors that store one quantized weight (bitsandbytes' layouts,
// or ckptkit's own for schemes bnb lacks; docs/formats-quant.md), and reading them back. Shared by
// quantize, lq-decompose (writes Q) and merge / every reader that accepts a quantized base.
#pragma once

#include <string>
#include <vector>

#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt {

/// How one quantized weight is stored.
enum class QuantLayout {
  Bnb4bit,  ///< bitsandbytes Params4bit (nf4 or fp4): W uint8 [n/2,1], absmax, quant_map,
            ///< nested_*, quant_state
  BnbInt8,  ///< bitsandbytes Int8Params (row-wise LLM.int8): W int8, SCB, weight_format
  Ckptkit   ///< any scheme: W packed codes + .qscales* + .codebook + .quant_state.ckptkit
};

/// "bnb-4bit", "bnb-int8", "ckptkit".
std::string quant_layout_name(QuantLayout layout);

/// A quantization format: the layout and, for the blockwise layouts, the spec (ignored for
/// BnbInt8, whose scale is per row).
struct QuantFormat {
  QuantLayout layout = QuantLayout::Bnb4bit;
  quant::QuantSpec spec;
};
bool operator==(const QuantFormat& a, const QuantFormat& b);

/// "bnb", "lq", "none" (the spelling of --double-quant and of the ckptkit quant_state).
std::string quant_dq_name(quant::DoubleQuant dq);

/// True when bitsandbytes' 4-bit layout can store `spec` (nf4 or fp4, block >= 32, double quant
/// bnb or none).
bool bnb_can_store(const quant::QuantSpec& spec);

/// The layout `auto` picks for a spec: Bnb4bit when bitsandbytes can store it (nf4/fp4, block >=
/// 32, double quant bnb or none), else Ckptkit. (Row-wise int8 is chosen explicitly, not here.)
QuantLayout default_quant_layout(const quant::QuantSpec& spec);

/// The tensors written in place of weight `weight` (plan order = write order). For BnbInt8 the
/// spec is ignored.
std::vector<TensorSpec> quantized_specs(QuantLayout layout, const quant::QuantSpec& spec,
                                        const TensorInfo& weight);

/// Those tensors' contents for a blockwise-quantized weight (layouts Bnb4bit, Ckptkit); the
/// packed codes of `q` move into the first tensor.
std::vector<OwnedTensor> quantized_tensors(QuantLayout layout, const quant::QuantSpec& spec,
                                           const TensorInfo& weight, quant::QuantizedTensor q);

/// Those tensors' contents for a row-wise int8 weight (layout BnbInt8).
std::vector<OwnedTensor> quantized_tensors_int8(const TensorInfo& weight,
                                                const quant::RowwiseInt8& q);

/// One quantized weight found in a checkpoint: its main tensor and its companions.
struct QuantizedGroup {
  QuantLayout layout = QuantLayout::Bnb4bit;
  std::string weight;                   ///< the main tensor's name, e.g. "model.x.weight"
  std::vector<std::string> companions;  ///< every other tensor that belongs to it
};

/// Every quantized weight in `ckpt`, in the checkpoint's tensor order.
std::vector<QuantizedGroup> quantized_groups(const Checkpoint& ckpt);

/// True when `ckpt` holds at least one quantized weight.
bool is_quantized_checkpoint(const Checkpoint& ckpt);

/// Error(Usage) naming the file and the first quantized weight of `ckpt`, when it holds one:
/// "the input is already quantized; " + `what_to_do`.
void refuse_quantized_checkpoint(const Checkpoint& ckpt, const std::string& what_to_do);

/// The float tensor dequantize_weight() gives back for `group`: the weight's name, its original
/// dtype (f16 for row-wise int8, which records none) and shape, read from the quant_state without
/// dequantizing (to plan outputs). Error(Format) naming the tensor for a bad state.
TensorSpec dequantized_spec(const Checkpoint& ckpt, const QuantizedGroup& group);

/// A weight dequantized to f32, with the dtype and shape it had before quantization.
struct DequantizedWeight {
  std::vector<float> values;
  DType dtype = DType::F32;
  Shape shape;
};

/// The format `group` is stored in, read from its quant_state (Error(Format) naming the tensor
/// for a bad state).
QuantFormat stored_quant_format(const Checkpoint& ckpt, const QuantizedGroup& group);

/// Dequantizes one group (validating every companion's dtype and size; Error(Format) naming the
/// file and tensor otherwise).
DequantizedWeight dequantize_weight(const Checkpoint& ckpt, const QuantizedGroup& group);

}  // namespace ckpt
