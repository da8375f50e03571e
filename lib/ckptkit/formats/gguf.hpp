// Writing GGUF v3 files, the format llama.cpp loads (ggml's docs/gguf.md): a header, typed
// key/value metadata, tensor infos and a data section aligned to 32 bytes, little-endian. Only
// what ckptkit writes (adapters): string, u32 and f32 values; F32, F16, BF16 and Q8_0 tensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt::gguf {

/// ggml's tensor type ids (ggml.h enum ggml_type).
enum class TensorType : std::uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

/// "f32", "f16", "bf16", "q8_0" (as llama.cpp's --outtype spells them), or nullopt.
std::optional<TensorType> parse_tensor_type(std::string_view name);
std::string tensor_type_name(TensorType type);

/// Elements per Q8_0 block (a f16 scale and 32 int8 codes, 34 bytes).
inline constexpr std::int64_t kQ8Block = 32;

/// gguf-py's Q8_0 quantizer (gguf/quants.py, what llama.cpp's converters write): per block of 32,
/// d = max|x| / 127 in f32, codes = x · (1/d) rounded half away from zero (0 where d is 0), d
/// stored as f16 (round to nearest even) before its 32 codes; bit-exact with ggml-quants.c.
/// `x.size()` must be a multiple of 32.
std::vector<std::byte> encode_q8_0(std::span<const float> x);

/// A GGUF file assembled in memory, written in insertion order.
class GgufFile {
 public:
  void set_string(const std::string& key, const std::string& value);
  void set_u32(const std::string& key, std::uint32_t value);
  void set_f32(const std::string& key, float value);
  /// A 2-D tensor given in torch order [rows, cols] (row-major f32) and stored as `type`; its
  /// GGUF ne is {cols, rows}. Q8_0 needs cols % 32 == 0 (Error(Internal) otherwise).
  void add_tensor(const std::string& name, std::span<const float> values, std::int64_t rows,
                  std::int64_t cols, TensorType type);
  /// The file's bytes.
  std::vector<std::byte> bytes() const;

 private:
  struct Tensor {
    std::string name;
    std::int64_t rows, cols;
    TensorType type;
    std::vector<std::byte> data;
  };
  std::vector<std::byte> kv_;  // serialized key/value pairs
  std::uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace ckpt::gguf
