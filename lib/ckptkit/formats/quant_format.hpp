// A quantization format as the user names it (--scheme / --block / --double-quant / --layout),
// resolved once into a QuantFormat; one float weight quantized into it (the tensors to write, the
// error, what dequantization gives back); and the config.json entry that tells loaders about it.
// One place for these rules: quantize, svd-init --quantize-residual and merge --requantize.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ckptkit/formats/quant_layout.hpp"

namespace ckpt {

/// The flags that name a format, as given (see docs/quantize.md).
struct QuantFormatRequest {
  std::string scheme = "nf4";           // nf2..nf8, fp4, int2..int8
  int block = 0;                        // 0: 64 (int8 without a block: bnb row-wise LLM.int8)
  std::string double_quant;             // bnb | lq | none; empty: bnb
  int lq_bits = 8;                      // LQ-LoRA b0
  int lq_group = 256;                   // LQ-LoRA B1
  std::string lq_scale_dtype = "fp32";  // LQ-LoRA b1
  std::string layout = "auto";          // auto | bnb | ckptkit
};

/// Resolves `request` (Error(Usage) naming `flag` for a bad scheme, block or combination): the
/// bitsandbytes layout wherever bnb can store the spec, else ckptkit's.
QuantFormat resolve_quant_format(const QuantFormatRequest& request,
                                 const std::string& flag = "--scheme");

/// "nf4", "int8 (row-wise)", ...: the scheme as reports and messages name it.
std::string quant_format_scheme(const QuantFormat& format);

/// The report settings that describe `format` (scheme, layout, block, double quant, ...).
nlohmann::ordered_json quant_format_json(const QuantFormat& format);

/// The tensors that store `weight` (its name, original dtype and shape) in `format`.
std::vector<TensorSpec> quant_format_specs(const QuantFormat& format, const TensorInfo& weight);

/// One weight quantized into a format.
struct QuantizedWeight {
  std::vector<OwnedTensor> tensors;  ///< quant_format_specs order
  std::vector<float> dequantized;    ///< what a reader dequantizes (when asked for)
  quant::ErrorStats err;             ///< of the dequantized values against the input
  double bits_formula = 0;           ///< the published bits/param formula
  double bits_stored = 0;            ///< bits/param of what is stored
};

/// Quantizes `x` (the weight's values in storage order, f32) into `format`. Error(Format) for a
/// non-finite value, naming nothing (callers add the file and tensor).
QuantizedWeight quantize_weight(const QuantFormat& format, const TensorInfo& weight,
                                std::span<const float> x, bool keep_dequantized);

/// The same for a bf16 weight given as its stored bytes, without widening it first (blockwise
/// layouts; the result is bit-identical to quantize_weight of the widened values).
QuantizedWeight quantize_weight_bf16(const QuantFormat& format, const TensorInfo& weight,
                                     std::span<const std::byte> bf16);

/// The config.json entry that describes `format`: transformers' quantization_config for the
/// bitsandbytes layouts (bnb_4bit_compute_dtype `compute_dtype`, `skip`: the linear modules left
/// in float), ckptkit_quantization for ckptkit's.
std::pair<std::string, nlohmann::json> quant_config_entry(const QuantFormat& format,
                                                          const std::string& compute_dtype,
                                                          const std::vector<std::string>& skip);

/// Replaces whatever quantization a config.json object describes with `format`'s entry (a
/// config.json read either sorted, nlohmann::json, or in file order, ordered_json).
template <class JsonObject>
void describe_quant_format(JsonObject& config, const QuantFormat& format,
                           const std::string& compute_dtype, const std::vector<std::string>& skip) {
  config.erase("quantization_config");
  config.erase("ckptkit_quantization");
  auto [key, value] = quant_config_entry(format, compute_dtype, skip);
  config[key] = JsonObject(value);
}

}  // namespace ckpt
