#include "ckptkit/formats/quant_layout.hpp"
#include "ckptkit/io/json_text.hpp"

#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/tensor_math.hpp"
#include "ckptkit/formats/bnb_layout.hpp"

namespace ckpt {
using quant::DoubleQuant;
using quant::QuantizedTensor;
using quant::QuantSpec;

namespace {

constexpr std::string_view kCkState = ".quant_state.ckptkit";
constexpr std::size_t kFloatReprMax = 24;  // longest Python repr of a double

std::string shape_json(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// "SCB"'s prefix for an int8 weight "x.weight" ("x."), or the whole name when it lacks "weight".
std::string int8_prefix(const std::string& weight) {
  return weight.substr(0, weight.size() - (weight.ends_with("weight") ? 6 : 0));
}

/// The ckptkit layout's quant_state JSON; without `offset` a placeholder of the longest float
/// repr (the planned size; the real text is padded to it).
std::string ck_state_json(const QuantSpec& spec, DType dtype, const Shape& shape,
                          std::optional<double> offset) {
  std::string j = "{\"format\": \"ckptkit-quant\", \"version\": 1, \"scheme\": \"" +
                  spec.scheme.name() + "\", \"bits\": " + std::to_string(spec.scheme.bits) +
                  ", \"block\": " + std::to_string(spec.block) + ", \"double_quant\": \"" +
                  quant_dq_name(spec.dq) + "\"";
  if (spec.dq == DoubleQuant::Bnb) j += ", \"nested_block\": " + std::to_string(spec.nested_block);
  if (spec.dq == DoubleQuant::Lq)
    j += ", \"lq_scale_bits\": " + std::to_string(spec.lq_bits) +
         ", \"lq_group\": " + std::to_string(spec.lq_group) + ", \"lq_scale_dtype\": \"" +
         std::string(dtype_name(spec.lq_scale_dtype)) + "\"";
  if (spec.dq != DoubleQuant::None)
    j += ", \"offset\": " + (offset ? python_float_repr(*offset) : std::string(kFloatReprMax, '0'));
  return j + ", \"dtype\": \"" + std::string(dtype_name(dtype)) +
         "\", \"shape\": " + shape_json(shape) + "}";
}

/// The bytes of companion `name` of the weight `for_tensor`, checked for dtype and element count.
std::span<const std::byte> need(const Checkpoint& in, const std::string& name,
                                const std::string& for_tensor, std::optional<DType> dtype,
                                std::optional<std::int64_t> count) {
  const auto* t = in.find(name);
  if (!t)
    fail(ErrorKind::Format,
         located(in.path().string(), for_tensor, "missing companion tensor '" + name + "'"));
  if (dtype && t->info.dtype != *dtype)
    fail(ErrorKind::Format, located(in.file_of(*t), name,
                                    "is " + std::string(dtype_name(t->info.dtype)) + ", expected " +
                                        std::string(dtype_name(*dtype))));
  if (count && numel(t->info.shape) != *count)
    fail(ErrorKind::Format, located(in.file_of(*t), name,
                                    "has " + std::to_string(numel(t->info.shape)) +
                                        " elements, expected " + std::to_string(*count)));
  return in.view(*t).bytes;
}

template <typename T>
std::vector<T> vec_of(std::span<const std::byte> b) {
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

nlohmann::json parse_state(std::span<const std::byte> b, const std::string& where) {
  return parse_json_text(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()),
                         where + "quant_state");
}

/// `where` for messages about the group's weight: "<file>: tensor '<name>': ".
std::string where_of(const Checkpoint& in, const QuantizedGroup& g) {
  const auto* main = in.find(g.weight);
  if (!main)
    fail(ErrorKind::Format,
         located(in.path().string(), g.weight, "quant_state without its weight tensor"));
  return located(in.file_of(*main), g.weight, "");
}

nlohmann::json state_of(const Checkpoint& in, const QuantizedGroup& g, const std::string& where) {
  return parse_state(need(in, g.companions.back(), g.weight, DType::U8, std::nullopt), where);
}

/// The bnb 4-bit state's spec, original dtype and shape (nf4 or fp4).
void read_bnb4_state(const nlohmann::json& st, const std::string& where, QuantizedTensor& q,
                     DType& orig, Shape& shape) {
  const std::string type = st.value("quant_type", "");
  if (type != "nf4" && type != "fp4")
    fail(ErrorKind::Unsupported, where + "quant_type '" + type + "' is not nf4 or fp4");
  const auto od = bnb::dtype_from_torch_name(st.value("dtype", ""));
  if (!od) fail(ErrorKind::Format, where + "unknown dtype in quant_state");
  orig = *od;
  shape = st.at("shape").get<Shape>();
  q.spec.scheme = quant::Scheme::parse(type);
  q.spec.block = st.at("blocksize").get<int>();
  q.numel = numel(shape);
  q.spec.dq = st.contains("nested_blocksize") ? DoubleQuant::Bnb : DoubleQuant::None;
  if (q.spec.dq == DoubleQuant::Bnb) q.spec.nested_block = st.at("nested_blocksize").get<int>();
  if (q.spec.dq == DoubleQuant::Bnb)
    q.offset = static_cast<float>(st.at("nested_offset").get<double>());
  q.spec.validate();
}

/// The ckptkit state's spec, offset, original dtype and shape.
void read_ck_state(const nlohmann::json& st, const std::string& where, QuantizedTensor& q,
                   DType& orig, Shape& shape) {
  if (st.value("format", "") != "ckptkit-quant" || st.value("version", 0) != 1)
    fail(ErrorKind::Unsupported, where + "unsupported ckptkit quant_state version");
  const auto od = parse_dtype(st.value("dtype", ""));
  if (!od) fail(ErrorKind::Format, where + "unknown dtype in quant_state");
  orig = *od;
  shape = st.at("shape").get<Shape>();
  q.spec.scheme = quant::Scheme::parse(st.at("scheme").get<std::string>());
  q.spec.block = st.at("block").get<int>();
  const std::string dq = st.at("double_quant").get<std::string>();
  q.spec.dq = dq == "bnb" ? DoubleQuant::Bnb : dq == "lq" ? DoubleQuant::Lq : DoubleQuant::None;
  if (q.spec.dq == DoubleQuant::Bnb) q.spec.nested_block = st.at("nested_block").get<int>();
  if (q.spec.dq == DoubleQuant::Lq) {
    q.spec.lq_bits = st.at("lq_scale_bits").get<int>();
    q.spec.lq_group = st.at("lq_group").get<int>();
    const auto sd = parse_dtype(st.at("lq_scale_dtype").get<std::string>());
    if (!sd) fail(ErrorKind::Format, where + "bad lq_scale_dtype");
    q.spec.lq_scale_dtype = *sd;
  }
  if (q.spec.dq != DoubleQuant::None) q.offset = static_cast<float>(st.at("offset").get<double>());
  q.spec.validate();
  q.numel = numel(shape);
}

void load_bnb4_tensors(const Checkpoint& in, const std::string& P, QuantizedTensor& q) {
  const std::int64_t nb = q.blocks();
  q.packed = vec_of<std::byte>(need(in, P, P, DType::U8, (q.numel + 1) / 2));
  q.codebook = vec_of<float>(need(in, P + ".quant_map", P, DType::F32, 16));
  if (q.spec.dq == DoubleQuant::Bnb) {
    q.scale_codes = vec_of<std::uint8_t>(need(in, P + ".absmax", P, DType::U8, nb));
    q.nested_absmax = vec_of<float>(need(in, P + ".nested_absmax", P, DType::F32,
                                         (nb + q.spec.nested_block - 1) / q.spec.nested_block));
    q.nested_map = vec_of<float>(need(in, P + ".nested_quant_map", P, DType::F32, 256));
  } else {
    q.absmax = vec_of<float>(need(in, P + ".absmax", P, DType::F32, nb));
  }
}

void load_ck_tensors(const Checkpoint& in, const std::string& P, QuantizedTensor& q) {
  const std::int64_t nb = q.blocks();
  const auto levels = static_cast<std::int64_t>(quant::scheme_levels(q.spec.scheme).size());
  q.packed = vec_of<std::byte>(need(in, P, P, DType::U8, (q.numel * q.spec.scheme.bits + 7) / 8));
  q.codebook = vec_of<float>(need(in, P + ".codebook", P, DType::F32, levels));
  if (q.spec.dq == DoubleQuant::None)
    q.absmax = vec_of<float>(need(in, P + ".qscales", P, DType::F32, nb));
  if (q.spec.dq == DoubleQuant::Bnb) {
    q.scale_codes = vec_of<std::uint8_t>(need(in, P + ".qscales", P, DType::U8, nb));
    q.nested_absmax = vec_of<float>(need(in, P + ".qscales_nested", P, DType::F32,
                                         (nb + q.spec.nested_block - 1) / q.spec.nested_block));
    q.nested_map = vec_of<float>(need(in, P + ".qscales_map", P, DType::F32, 256));
  }
  if (q.spec.dq == DoubleQuant::Lq) {
    const auto packed =
        vec_of<std::uint8_t>(need(in, P + ".qscales", P, DType::U8, (nb * q.spec.lq_bits + 7) / 8));
    q.scale_codes = quant::unpack_codes(packed, q.spec.lq_bits, nb);
    const std::int64_t ng = (nb + q.spec.lq_group - 1) / q.spec.lq_group;
    const auto b = need(in, P + ".qscales_nested", P, q.spec.lq_scale_dtype, ng);
    q.nested_absmax.resize(static_cast<std::size_t>(ng));
    decode_to_f32(q.spec.lq_scale_dtype, b, q.nested_absmax);
  }
}

}  // namespace

std::string quant_layout_name(QuantLayout layout) {
  switch (layout) {
    case QuantLayout::Bnb4bit:
      return "bnb-4bit";
    case QuantLayout::BnbInt8:
      return "bnb-int8";
    case QuantLayout::Ckptkit:
      return "ckptkit";
  }
  return "ckptkit";
}

bool operator==(const QuantFormat& a, const QuantFormat& b) {
  if (a.layout != b.layout) return false;
  if (a.layout == QuantLayout::BnbInt8) return true;
  const QuantSpec &x = a.spec, &y = b.spec;
  return x.scheme.name() == y.scheme.name() && x.block == y.block && x.dq == y.dq &&
         (x.dq != DoubleQuant::Bnb || x.nested_block == y.nested_block) &&
         (x.dq != DoubleQuant::Lq || (x.lq_bits == y.lq_bits && x.lq_group == y.lq_group &&
                                      x.lq_scale_dtype == y.lq_scale_dtype));
}

std::string quant_dq_name(quant::DoubleQuant dq) {
  return dq == DoubleQuant::Bnb ? "bnb" : dq == DoubleQuant::Lq ? "lq" : "none";
}

bool bnb_can_store(const quant::QuantSpec& spec) {
  return spec.scheme.family != quant::Family::INT && spec.scheme.bits == 4 &&
         spec.dq != DoubleQuant::Lq && spec.block >= 32;
}

QuantLayout default_quant_layout(const quant::QuantSpec& spec) {
  return bnb_can_store(spec) ? QuantLayout::Bnb4bit : QuantLayout::Ckptkit;
}

std::vector<TensorSpec> quantized_specs(QuantLayout layout, const quant::QuantSpec& s,
                                        const TensorInfo& t) {
  const std::string& P = t.name;
  if (layout == QuantLayout::BnbInt8) {
    const std::string prefix = int8_prefix(P);
    return {{P, DType::I8, t.shape},
            {prefix + "SCB", DType::F32, {t.shape.empty() ? 1 : t.shape[0]}},
            {prefix + "weight_format", DType::U8, {}}};
  }
  if (layout == QuantLayout::Bnb4bit) return bnb::bnb4_specs(P, s, t.dtype, t.shape);
  const std::int64_t n = numel(t.shape);
  const std::int64_t nb = (n + s.block - 1) / s.block;
  const auto levels = static_cast<std::int64_t>(quant::scheme_levels(s.scheme).size());
  std::vector<TensorSpec> o = {{P, DType::U8, {(n * s.scheme.bits + 7) / 8}}};
  if (s.dq == DoubleQuant::None) o.push_back({P + ".qscales", DType::F32, {nb}});
  if (s.dq == DoubleQuant::Bnb) {
    o.push_back({P + ".qscales", DType::U8, {nb}});
    o.push_back({P + ".qscales_nested", DType::F32, {(nb + s.nested_block - 1) / s.nested_block}});
    o.push_back({P + ".qscales_map", DType::F32, {256}});
  }
  if (s.dq == DoubleQuant::Lq) {
    o.push_back({P + ".qscales", DType::U8, {(nb * s.lq_bits + 7) / 8}});
    o.push_back({P + ".qscales_nested", s.lq_scale_dtype, {(nb + s.lq_group - 1) / s.lq_group}});
  }
  o.push_back({P + ".codebook", DType::F32, {levels}});
  o.push_back(
      {P + std::string(kCkState),
       DType::U8,
       {static_cast<std::int64_t>(ck_state_json(s, t.dtype, t.shape, std::nullopt).size())}});
  return o;
}

std::vector<OwnedTensor> quantized_tensors(QuantLayout layout, const quant::QuantSpec& spec,
                                           const TensorInfo& t, quant::QuantizedTensor q) {
  CKPT_ASSERT(layout != QuantLayout::BnbInt8);
  if (layout == QuantLayout::Bnb4bit)
    return bnb::bnb4_tensors(t.name, spec, t.dtype, t.shape, std::move(q));
  const auto plan = quantized_specs(layout, spec, t);
  std::vector<std::vector<std::byte>> data;
  data.push_back(std::move(q.packed));
  if (spec.dq == DoubleQuant::None) data.push_back(as_bytes(q.absmax));
  if (spec.dq == DoubleQuant::Bnb) {
    data.push_back(as_bytes(q.scale_codes));
    data.push_back(as_bytes(q.nested_absmax));
    data.push_back(as_bytes(q.nested_map));
  }
  if (spec.dq == DoubleQuant::Lq) {
    data.push_back(as_bytes(quant::pack_codes(q.scale_codes, spec.lq_bits)));
    std::vector<std::byte> nested(q.nested_absmax.size() * dtype_size(spec.lq_scale_dtype));
    encode_from_f32(spec.lq_scale_dtype, q.nested_absmax, nested);
    data.push_back(std::move(nested));
  }
  data.push_back(as_bytes(q.codebook));
  data.push_back(bnb::padded_bytes(
      ck_state_json(spec, t.dtype, t.shape, static_cast<double>(q.offset)), plan.back().nbytes()));
  return bnb::planned_tensors(plan, std::move(data));
}

std::vector<OwnedTensor> quantized_tensors_int8(const TensorInfo& weight,
                                                const quant::RowwiseInt8& q) {
  const auto plan = quantized_specs(QuantLayout::BnbInt8, {}, weight);
  std::vector<std::vector<std::byte>> data = {as_bytes(q.cb), as_bytes(q.scb), {std::byte{0}}};
  return bnb::planned_tensors(plan, std::move(data));
}

std::vector<QuantizedGroup> quantized_groups(const Checkpoint& ckpt) {
  std::map<std::string, QuantizedGroup> by_weight;
  // Companions that exist in the checkpoint (a bnb nf4 weight without double quant has no
  // nested_* tensors); the quant_state always last.
  auto present = [&](std::vector<std::string> names) {
    std::vector<std::string> out;
    for (auto& n : names)
      if (ckpt.find(n)) out.push_back(std::move(n));
    return out;
  };
  for (const auto& t : ckpt.tensors()) {
    const std::string& n = t.info.name;
    static_assert(bnb::kNf4StateSuffix.size() == bnb::kFp4StateSuffix.size());
    if (n.ends_with(bnb::kNf4StateSuffix) || n.ends_with(bnb::kFp4StateSuffix)) {
      const std::string w = n.substr(0, n.size() - bnb::kNf4StateSuffix.size());
      auto c =
          present({w + ".absmax", w + ".quant_map", w + ".nested_absmax", w + ".nested_quant_map"});
      c.push_back(n);
      by_weight[w] = {QuantLayout::Bnb4bit, w, std::move(c)};
    } else if (n.ends_with(kCkState)) {
      const std::string w = n.substr(0, n.size() - kCkState.size());
      auto c =
          present({w + ".qscales", w + ".qscales_nested", w + ".qscales_map", w + ".codebook"});
      c.push_back(n);
      by_weight[w] = {QuantLayout::Ckptkit, w, std::move(c)};
    } else if (n.ends_with("SCB") && t.info.dtype == DType::F32) {
      const std::string prefix = n.substr(0, n.size() - 3);
      const auto* w = ckpt.find(prefix + "weight");
      if (w && w->info.dtype == DType::I8) {
        auto c = present({prefix + "weight_format"});
        c.insert(c.begin(), n);
        by_weight[prefix + "weight"] = {QuantLayout::BnbInt8, prefix + "weight", std::move(c)};
      }
    }
  }
  for (const auto& [w, g] : by_weight)
    if (!ckpt.find(w))
      fail(ErrorKind::Format,
           located(ckpt.path().string(), w, "quant_state without its weight tensor"));
  std::vector<QuantizedGroup> out;
  out.reserve(by_weight.size());
  for (const auto& t : ckpt.tensors()) {
    auto it = by_weight.find(t.info.name);
    if (it != by_weight.end()) out.push_back(std::move(it->second));
  }
  return out;
}

bool is_quantized_checkpoint(const Checkpoint& ckpt) {
  return !quantized_groups(ckpt).empty();
}

void refuse_quantized_checkpoint(const Checkpoint& ckpt, const std::string& what_to_do) {
  const auto groups = quantized_groups(ckpt);
  if (groups.empty()) return;
  const std::string& w = groups.front().weight;
  fail(ErrorKind::Usage,
       located(ckpt.file_of(*ckpt.find(w)), w, "the input is already quantized; " + what_to_do));
}

TensorSpec dequantized_spec(const Checkpoint& ckpt, const QuantizedGroup& g) {
  const std::string where = where_of(ckpt, g);
  const auto* t = ckpt.find(g.weight);
  if (g.layout == QuantLayout::BnbInt8) return {g.weight, DType::F16, t->info.shape};
  const auto st = state_of(ckpt, g, where);
  try {
    const auto od = g.layout == QuantLayout::Bnb4bit
                        ? bnb::dtype_from_torch_name(st.value("dtype", ""))
                        : parse_dtype(st.value("dtype", ""));
    if (!od) fail(ErrorKind::Format, where + "unknown dtype in quant_state");
    return {g.weight, *od, st.at("shape").get<Shape>()};
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
  }
}

QuantFormat stored_quant_format(const Checkpoint& ckpt, const QuantizedGroup& g) {
  QuantFormat f;
  f.layout = g.layout;
  if (g.layout == QuantLayout::BnbInt8) return f;
  const std::string where = where_of(ckpt, g);
  const auto st = state_of(ckpt, g, where);
  QuantizedTensor q;
  DType dtype = DType::F32;
  Shape shape;
  try {
    if (g.layout == QuantLayout::Bnb4bit)
      read_bnb4_state(st, where, q, dtype, shape);
    else
      read_ck_state(st, where, q, dtype, shape);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage)
      fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
    throw;
  }
  f.spec = q.spec;
  return f;
}

DequantizedWeight dequantize_weight(const Checkpoint& in, const QuantizedGroup& g) {
  const std::string& P = g.weight;
  const std::string where = where_of(in, g);
  const auto* main = in.find(P);
  try {
    if (g.layout == QuantLayout::BnbInt8) {
      if (main->info.shape.size() != 2) fail(ErrorKind::Format, where + "int8 weight is not 2-D");
      const std::int64_t rows = main->info.shape[0], cols = main->info.shape[1];
      quant::RowwiseInt8 q;
      q.cb = vec_of<std::int8_t>(in.view(*main).bytes);
      q.scb = vec_of<float>(need(in, g.companions.front(), P, DType::F32, rows));
      DequantizedWeight d{std::vector<float>(q.cb.size()), DType::F16, main->info.shape};
      quant::dequantize_rowwise_int8(q, cols, d.values);
      return d;
    }
    const auto st = state_of(in, g, where);
    QuantizedTensor q;
    DequantizedWeight d;
    if (g.layout == QuantLayout::Bnb4bit) {
      read_bnb4_state(st, where, q, d.dtype, d.shape);
      if (!g.companions.back().ends_with(bnb::state_suffix(q.spec)))
        fail(ErrorKind::Format, where + "quant_type '" + q.spec.scheme.name() +
                                    "' disagrees with the quant_state's key " +
                                    g.companions.back());
      load_bnb4_tensors(in, P, q);
    } else {
      read_ck_state(st, where, q, d.dtype, d.shape);
      load_ck_tensors(in, P, q);
    }
    if (q.spec.dq == DoubleQuant::Bnb)
      for (auto c : q.scale_codes)
        if (c >= q.nested_map.size()) fail(ErrorKind::Format, where + "scale code out of range");
    d.values.resize(static_cast<std::size_t>(q.numel));
    quant::dequantize(q, d.values);
    return d;
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
  } catch (const Error& e) {
    // quant/ checks a spec as command-line input (Usage, "--scheme: ..."): read from a file, the
    // same problem is a bad quant_state (Format; found by fuzz_quant_state).
    if (e.kind() == ErrorKind::Usage)
      fail(ErrorKind::Format, where + "bad quant_state (" + e.what() + ")");
    // Errors from quant/ (codes outside the codebook) name no tensor: add it.
    if (std::string(e.what()).find("tensor '") != std::string::npos) throw;
    throw Error(e.kind(), where + e.what());
  }
}

}  // namespace ckpt
