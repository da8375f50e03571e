#include "ckptkit/formats/quant_format.hpp"

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/formats/bnb_layout.hpp"

namespace ckpt {
using quant::DoubleQuant;

namespace {

bool is_rowwise_int8(const QuantFormat& f) {
  return f.layout == QuantLayout::BnbInt8;
}

/// The row and column counts of a weight quantized row-wise (one SCB per shape[0]).
std::pair<std::int64_t, std::int64_t> rows_cols(const TensorInfo& t) {
  const std::int64_t n = numel(t.shape);
  const std::int64_t rows = t.shape.empty() ? 1 : t.shape[0];
  return {rows, rows > 0 ? n / rows : 0};
}

QuantizedWeight blockwise_weight(const QuantFormat& f, const TensorInfo& t,
                                 quant::QuantizedTensor q, const quant::ErrorStats& err,
                                 bool keep_dequantized) {
  QuantizedWeight w;
  w.err = err;
  w.bits_formula = quant::formula_bits_per_param(f.spec);
  w.bits_stored = quant::stored_bits_per_param(q);
  if (keep_dequantized) {
    w.dequantized.resize(static_cast<std::size_t>(q.numel));
    quant::dequantize(q, w.dequantized);
  }
  w.tensors = quantized_tensors(f.layout, f.spec, t, std::move(q));
  return w;
}

}  // namespace

QuantFormat resolve_quant_format(const QuantFormatRequest& o, const std::string& flag) {
  QuantFormat r;
  try {
    r.spec.scheme = quant::Scheme::parse(o.scheme);
  } catch (const Error& e) {
    // quant/ names the flag --scheme; commands that take the scheme under another name say so.
    std::string msg = e.what();
    if (msg.starts_with("--scheme")) msg.replace(0, 8, flag);
    fail(e.kind(), msg);
  }
  const bool int8 = r.spec.scheme.family == quant::Family::INT && r.spec.scheme.bits == 8;
  if (o.layout != "auto" && o.layout != "bnb" && o.layout != "ckptkit")
    fail(ErrorKind::Usage, "--layout: '" + o.layout + "' is not auto, bnb or ckptkit");
  if (int8 && o.block == 0 && o.layout != "ckptkit") {
    if (!o.double_quant.empty() && o.double_quant != "none")
      fail(ErrorKind::Usage,
           "--double-quant: bitsandbytes int8 (row-wise LLM.int8) has no double quantization; give "
           "--block for blockwise int8");
    r.layout = QuantLayout::BnbInt8;
    return r;
  }
  r.spec.block = o.block == 0 ? 64 : o.block;
  const std::string dq = o.double_quant.empty() ? "bnb" : o.double_quant;
  if (dq == "bnb")
    r.spec.dq = DoubleQuant::Bnb;
  else if (dq == "lq")
    r.spec.dq = DoubleQuant::Lq;
  else if (dq == "none")
    r.spec.dq = DoubleQuant::None;
  else
    fail(ErrorKind::Usage, "--double-quant: '" + dq + "' is not bnb, lq or none");
  r.spec.lq_bits = o.lq_bits;
  r.spec.lq_group = o.lq_group;
  const auto sd = parse_float_dtype(o.lq_scale_dtype);
  if (!sd) fail(ErrorKind::Usage, "--lq-scale-dtype: unknown type '" + o.lq_scale_dtype + "'");
  r.spec.lq_scale_dtype = *sd;
  r.spec.validate();
  if (o.layout == "bnb" && !bnb_can_store(r.spec))
    fail(ErrorKind::Usage,
         "--layout bnb: bitsandbytes stores nf4 and fp4 (block >= 32, double quant bnb or none) "
         "and row-wise int8 only");
  r.layout = o.layout == "ckptkit" ? QuantLayout::Ckptkit : default_quant_layout(r.spec);
  return r;
}

std::string quant_format_scheme(const QuantFormat& f) {
  return is_rowwise_int8(f) ? "int8" : f.spec.scheme.name();
}

nlohmann::ordered_json quant_format_json(const QuantFormat& f) {
  nlohmann::ordered_json j = {{"scheme", quant_format_scheme(f)},
                              {"layout", quant_layout_name(f.layout)}};
  if (is_rowwise_int8(f)) {
    j["block"] = "row";
    j["double_quant"] = "none";
    return j;
  }
  const quant::QuantSpec& s = f.spec;
  j["block"] = s.block;
  j["double_quant"] = quant_dq_name(s.dq);
  if (s.dq == DoubleQuant::Bnb) j["nested_block"] = s.nested_block;
  if (s.dq == DoubleQuant::Lq) {
    j["lq_scale_bits"] = s.lq_bits;
    j["lq_group"] = s.lq_group;
    j["lq_scale_dtype"] = std::string(dtype_name(s.lq_scale_dtype));
  }
  j["bits_per_param_formula"] = quant::formula_bits_per_param(s);
  return j;
}

std::vector<TensorSpec> quant_format_specs(const QuantFormat& f, const TensorInfo& weight) {
  return quantized_specs(f.layout, f.spec, weight);
}

QuantizedWeight quantize_weight(const QuantFormat& f, const TensorInfo& t, std::span<const float> x,
                                bool keep_dequantized) {
  if (!is_rowwise_int8(f)) {
    quant::ErrorStats err;
    quant::QuantizedTensor q = quant::quantize(x, f.spec, &err);
    return blockwise_weight(f, t, std::move(q), err, keep_dequantized);
  }
  const auto [rows, cols] = rows_cols(t);
  const quant::RowwiseInt8 q8 = quant::quantize_rowwise_int8(x, rows, cols);
  QuantizedWeight w;
  w.dequantized.resize(x.size());
  quant::dequantize_rowwise_int8(q8, cols, w.dequantized);
  w.err = quant::error_stats(x, w.dequantized);
  const double n = static_cast<double>(x.size());
  w.bits_formula = 8.0 + 32.0 / static_cast<double>(std::max<std::int64_t>(cols, 1));
  w.bits_stored = n > 0 ? (8.0 * n + 32.0 * static_cast<double>(rows) + 8.0) / n : 0.0;
  w.tensors = quantized_tensors_int8(t, q8);
  if (!keep_dequantized) w.dequantized = {};
  return w;
}

QuantizedWeight quantize_weight_bf16(const QuantFormat& f, const TensorInfo& t,
                                     std::span<const std::byte> bf16) {
  if (is_rowwise_int8(f)) {
    std::vector<float> x(bf16.size() / 2);
    decode_to_f32(DType::BF16, bf16, x);
    return quantize_weight(f, t, x, false);
  }
  quant::ErrorStats err;
  quant::QuantizedTensor q = quant::quantize_bf16(bf16, f.spec, &err);
  return blockwise_weight(f, t, std::move(q), err, false);
}

std::pair<std::string, nlohmann::json> quant_config_entry(const QuantFormat& f,
                                                          const std::string& compute_dtype,
                                                          const std::vector<std::string>& skip) {
  if (f.layout == QuantLayout::Ckptkit)
    return {"ckptkit_quantization",
            {{"format", "ckptkit-quant"},
             {"version", 1},
             {"scheme", f.spec.scheme.name()},
             {"block", f.spec.block},
             {"double_quant", quant_dq_name(f.spec.dq)}}};
  return {"quantization_config",
          bnb::quantization_config(f.layout == QuantLayout::Bnb4bit, f.spec.scheme.name(),
                                   compute_dtype, f.spec.dq == DoubleQuant::Bnb, skip)};
}

}  // namespace ckpt
