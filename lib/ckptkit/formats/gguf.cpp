#include "ckptkit/formats/gguf.hpp"

#include <cmath>
#include <cstring>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"

namespace ckpt::gguf {
namespace {

constexpr std::uint32_t kVersion = 3;
constexpr std::uint64_t kAlignment = 32;  // general.alignment's default
// GGUF value types (gguf_type).
constexpr std::uint32_t kTypeU32 = 4, kTypeF32 = 6, kTypeString = 8;

/// Appends n bytes (resize + memcpy: GCC 12 warns falsely about vector::insert of a range here).
void append(std::vector<std::byte>& out, const void* data, std::size_t n) {
  const std::size_t at = out.size();
  out.resize(at + n);
  if (n) std::memcpy(out.data() + at, data, n);
}

template <class T>
void put(std::vector<std::byte>& out, T value) {
  append(out, &value, sizeof(T));  // little-endian host (x86, arm64), as GGUF
}

void put_string(std::vector<std::byte>& out, const std::string& s) {
  put<std::uint64_t>(out, s.size());
  append(out, s.data(), s.size());
}

void pad_to(std::vector<std::byte>& out, std::uint64_t alignment) {
  out.resize((out.size() + alignment - 1) / alignment * alignment, std::byte{0});
}

std::size_t element_bytes(TensorType t) {
  return t == TensorType::F32 ? 4 : 2;
}

}  // namespace

std::optional<TensorType> parse_tensor_type(std::string_view name) {
  if (name == "f32") return TensorType::F32;
  if (name == "f16") return TensorType::F16;
  if (name == "bf16") return TensorType::BF16;
  if (name == "q8_0") return TensorType::Q8_0;
  return std::nullopt;
}

std::string tensor_type_name(TensorType type) {
  switch (type) {
    case TensorType::F32:
      return "f32";
    case TensorType::F16:
      return "f16";
    case TensorType::BF16:
      return "bf16";
    case TensorType::Q8_0:
      return "q8_0";
  }
  return "f32";
}

std::vector<std::byte> encode_q8_0(std::span<const float> x) {
  CKPT_ASSERT(x.size() % kQ8Block == 0);
  std::vector<std::byte> out;
  out.reserve(x.size() / kQ8Block * 34);
  for (std::size_t b = 0; b < x.size(); b += kQ8Block) {
    float amax = 0;
    for (std::size_t i = 0; i < kQ8Block; ++i)
      amax = std::max(amax, std::fabs(x[b + i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put<std::uint16_t>(out, f32_to_f16(d));
    for (std::size_t i = 0; i < kQ8Block; ++i) {
      // np_roundf: sign(v) * (floor(|v|) + floor(2 * (|v| - floor(|v|)))), half away from zero
      // without the rounding of |v| + 0.5.
      const float v = x[b + i] * id;
      const float a = std::fabs(v), whole = std::floor(a);
      const float r = whole + std::floor(2.0f * (a - whole));
      put<std::int8_t>(out, static_cast<std::int8_t>(std::copysign(r, v)));
    }
  }
  return out;
}

void GgufFile::set_string(const std::string& key, const std::string& value) {
  put_string(kv_, key);
  put<std::uint32_t>(kv_, kTypeString);
  put_string(kv_, value);
  ++kv_count_;
}

void GgufFile::set_u32(const std::string& key, std::uint32_t value) {
  put_string(kv_, key);
  put<std::uint32_t>(kv_, kTypeU32);
  put<std::uint32_t>(kv_, value);
  ++kv_count_;
}

void GgufFile::set_f32(const std::string& key, float value) {
  put_string(kv_, key);
  put<std::uint32_t>(kv_, kTypeF32);
  put<float>(kv_, value);
  ++kv_count_;
}

void GgufFile::add_tensor(const std::string& name, std::span<const float> values, std::int64_t rows,
                          std::int64_t cols, TensorType type) {
  CKPT_ASSERT(static_cast<std::int64_t>(values.size()) == rows * cols);
  Tensor t{name, rows, cols, type, {}};
  if (type == TensorType::Q8_0) {
    if (cols % kQ8Block != 0)
      fail(ErrorKind::Internal, name + ": Q8_0 needs rows of a multiple of 32 values");
    t.data = encode_q8_0(values);
  } else {
    t.data.resize(values.size() * element_bytes(type));
    encode_from_f32(type == TensorType::F32   ? DType::F32
                    : type == TensorType::F16 ? DType::F16
                                              : DType::BF16,
                    values, t.data);
  }
  tensors_.push_back(std::move(t));
}

std::vector<std::byte> GgufFile::bytes() const {
  std::vector<std::byte> out;
  append(out, "GGUF", 4);
  put<std::uint32_t>(out, kVersion);
  put<std::uint64_t>(out, tensors_.size());
  put<std::uint64_t>(out, kv_count_);
  append(out, kv_.data(), kv_.size());
  std::uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<std::uint32_t>(out, 2);
    put<std::uint64_t>(out, static_cast<std::uint64_t>(t.cols));  // ne[0]: the row length
    put<std::uint64_t>(out, static_cast<std::uint64_t>(t.rows));
    put<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
    put<std::uint64_t>(out, offset);
    offset = (offset + t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
  }
  pad_to(out, kAlignment);
  for (const auto& t : tensors_) {
    append(out, t.data.data(), t.data.size());
    pad_to(out, kAlignment);
  }
  return out;
}

}  // namespace ckpt::gguf
