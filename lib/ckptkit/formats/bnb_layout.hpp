#pragma once
/// bitsandbytes' on-disk layout of a 4-bit (NF4 or FP4) weight (research quant-anchors §2.7): the
/// six keys of Linear4bit's state dict (packed codes, absmax, quant_map, nested_absmax,
/// nested_quant_map and the packed quant_state JSON), plus transformers' quantization_config.
/// Shared by `quantize`, `mpo-init --quantize-residual` and lq-decompose so that every writer
/// produces the same bytes.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/tensor.hpp"
#include "ckptkit/io/writer.hpp"
#include "ckptkit/quant/blockwise.hpp"

namespace ckpt::bnb {

/// Suffixes of the packed quant_state tensor of a 4-bit weight ("<weight>.quant_state....").
inline constexpr std::string_view kNf4StateSuffix = ".quant_state.bitsandbytes__nf4";
inline constexpr std::string_view kFp4StateSuffix = ".quant_state.bitsandbytes__fp4";

/// The suffix for `spec`'s scheme (nf4 or fp4).
std::string_view state_suffix(const quant::QuantSpec& spec);

/// torch's spelling of a float dtype without "torch." (quant_state "dtype"); other dtypes give
/// their safetensors name.
std::string torch_dtype_name(DType t);
/// Inverse of torch_dtype_name for the float dtypes; nullopt otherwise.
std::optional<DType> dtype_from_torch_name(const std::string& s);

/// NF4 with bitsandbytes' double quantization (nested block 256) over blocks of `block`.
quant::QuantSpec nf4_spec(int block);

/// json.dumps of QuantState.as_dict's non-tensor entries, in bnb's key order. Without `offset`
/// (not known before quantizing) the nested_offset is a placeholder as long as the longest float
/// repr, which is the planned length; bnb4_tensors pads the real text to it with spaces.
/// `spec` must be NF4 or FP4 with double quant Bnb or None.
std::string bnb4_state_json(const quant::QuantSpec& spec, DType dtype, const Shape& shape,
                            std::optional<double> offset);

/// The tensors written in place of weight `name` (original `dtype` and `shape`), in write order.
std::vector<TensorSpec> bnb4_specs(const std::string& name, const quant::QuantSpec& spec,
                                   DType dtype, const Shape& shape);

/// The bytes of bnb4_specs(name, spec, dtype, shape) for the quantized weight `q` (its packed
/// codes move into the first tensor).
std::vector<OwnedTensor> bnb4_tensors(const std::string& name, const quant::QuantSpec& spec,
                                      DType dtype, const Shape& shape, quant::QuantizedTensor q);

/// transformers' BitsAndBytesConfig.to_dict(): 4-bit `quant_type` ("nf4" or "fp4"; with
/// `compute_dtype`, double quant or not) or LLM.int8 when !four_bit. `skip`: linear modules left
/// in float (null when empty).
nlohmann::json quantization_config(bool four_bit, const std::string& quant_type,
                                   const std::string& compute_dtype, bool double_quant,
                                   const std::vector<std::string>& skip);

/// `text` followed by spaces (JSON whitespace) up to `len` bytes: state JSON at its planned size.
std::vector<std::byte> padded_bytes(const std::string& text, std::size_t len);

/// Pairs planned specs with computed bytes; an Internal error names the tensor whose size differs
/// from the plan.
std::vector<OwnedTensor> planned_tensors(const std::vector<TensorSpec>& plan,
                                         std::vector<std::vector<std::byte>> data);

}  // namespace ckpt::bnb
