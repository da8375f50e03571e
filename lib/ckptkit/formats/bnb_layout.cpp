#include "ckptkit/formats/bnb_layout.hpp"

#include <cstring>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/tensor_math.hpp"

namespace ckpt::bnb {
namespace {

constexpr std::size_t kFloatReprMax = 24;  // longest Python repr of a double

std::string shape_json(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

std::string torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    case DType::F64:
      return "float64";
    default:
      return std::string(dtype_name(t));
  }
}

std::optional<DType> dtype_from_torch_name(const std::string& s) {
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  if (s == "float64") return DType::F64;
  return std::nullopt;
}

quant::QuantSpec nf4_spec(int block) {
  quant::QuantSpec s;
  s.scheme = {quant::Family::NF, 4};
  s.block = block;
  s.dq = quant::DoubleQuant::Bnb;
  s.nested_block = 256;
  s.validate();
  return s;
}

std::string_view state_suffix(const quant::QuantSpec& spec) {
  return spec.scheme.family == quant::Family::FP ? kFp4StateSuffix : kNf4StateSuffix;
}

std::string bnb4_state_json(const quant::QuantSpec& spec, DType dtype, const Shape& shape,
                            std::optional<double> offset) {
  std::string j = "{\"quant_type\": \"" + spec.scheme.name() +
                  "\", \"blocksize\": " + std::to_string(spec.block) + ", \"dtype\": \"" +
                  torch_dtype_name(dtype) + "\", \"shape\": " + shape_json(shape);
  if (spec.dq == quant::DoubleQuant::Bnb) {
    j += ", \"nested_blocksize\": " + std::to_string(spec.nested_block) +
         ", \"nested_dtype\": \"float32\", \"nested_offset\": ";
    j += offset ? python_float_repr(*offset) : std::string(kFloatReprMax, '0');
  }
  return j + "}";
}

std::vector<TensorSpec> bnb4_specs(const std::string& name, const quant::QuantSpec& spec,
                                   DType dtype, const Shape& shape) {
  const std::int64_t n = numel(shape), nb = (n + spec.block - 1) / spec.block;
  const bool dq = spec.dq == quant::DoubleQuant::Bnb;
  std::vector<TensorSpec> o = {{name, DType::U8, {(n + 1) / 2, 1}},
                               {name + ".absmax", dq ? DType::U8 : DType::F32, {nb}},
                               {name + ".quant_map", DType::F32, {16}}};
  if (dq) {
    o.push_back(
        {name + ".nested_absmax", DType::F32, {(nb + spec.nested_block - 1) / spec.nested_block}});
    o.push_back({name + ".nested_quant_map", DType::F32, {256}});
  }
  o.push_back(
      {name + std::string(state_suffix(spec)),
       DType::U8,
       {static_cast<std::int64_t>(bnb4_state_json(spec, dtype, shape, std::nullopt).size())}});
  return o;
}

std::vector<OwnedTensor> bnb4_tensors(const std::string& name, const quant::QuantSpec& spec,
                                      DType dtype, const Shape& shape, quant::QuantizedTensor q) {
  const auto plan = bnb4_specs(name, spec, dtype, shape);
  const bool dq = spec.dq == quant::DoubleQuant::Bnb;
  std::vector<std::vector<std::byte>> data;
  data.push_back(std::move(q.packed));
  data.push_back(dq ? as_bytes(q.scale_codes) : as_bytes(q.absmax));
  data.push_back(as_bytes(q.codebook));
  if (dq) {
    data.push_back(as_bytes(q.nested_absmax));
    data.push_back(as_bytes(q.nested_map));
  }
  data.push_back(padded_bytes(bnb4_state_json(spec, dtype, shape, static_cast<double>(q.offset)),
                              plan.back().nbytes()));
  return planned_tensors(plan, std::move(data));
}

nlohmann::json quantization_config(bool four_bit, const std::string& quant_type,
                                   const std::string& compute_dtype, bool double_quant,
                                   const std::vector<std::string>& skip) {
  nlohmann::json c;
  c["_load_in_4bit"] = four_bit;
  c["_load_in_8bit"] = !four_bit;
  c["bnb_4bit_compute_dtype"] = four_bit ? compute_dtype : "float32";
  c["bnb_4bit_quant_storage"] = "uint8";
  c["bnb_4bit_quant_type"] = four_bit ? quant_type : "fp4";  // BitsAndBytesConfig's default
  c["bnb_4bit_use_double_quant"] = four_bit && double_quant;
  c["llm_int8_enable_fp32_cpu_offload"] = false;
  c["llm_int8_has_fp16_weight"] = false;
  c["llm_int8_skip_modules"] = skip.empty() ? nlohmann::json(nullptr) : nlohmann::json(skip);
  c["llm_int8_threshold"] = 6.0;
  c["load_in_4bit"] = four_bit;
  c["load_in_8bit"] = !four_bit;
  c["quant_method"] = "bitsandbytes";
  return c;
}

std::vector<std::byte> padded_bytes(const std::string& text, std::size_t len) {
  CKPT_ASSERT(text.size() <= len);
  std::vector<std::byte> b(len, std::byte{' '});
  std::memcpy(b.data(), text.data(), text.size());
  return b;
}

std::vector<OwnedTensor> planned_tensors(const std::vector<TensorSpec>& plan,
                                         std::vector<std::vector<std::byte>> data) {
  CKPT_ASSERT(data.size() == plan.size());
  std::vector<OwnedTensor> out;
  out.reserve(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (data[i].size() != plan[i].nbytes())
      fail(ErrorKind::Internal, located("", plan[i].name,
                                        "computed " + std::to_string(data[i].size()) +
                                            " bytes, planned " + std::to_string(plan[i].nbytes())));
    out.push_back({plan[i].name, plan[i].dtype, plan[i].shape, std::move(data[i])});
  }
  return out;
}

}  // namespace ckpt::bnb
