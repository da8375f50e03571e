// Element types of safetensors files and exact conversions between the float ones.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "ckptkit/core/simd_path.hpp"

namespace ckpt {

enum class DType : std::uint8_t {
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  I64,
  I32,
  I16,
  I8,
  U64,
  U32,
  U16,
  U8,
  Bool
};

/// Bytes per element.
std::size_t dtype_size(DType t);
/// The safetensors spelling: "F32", "BF16", "U8", ...
std::string_view dtype_name(DType t);
/// Parses the safetensors spelling; nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);
/// Also accepts user spellings: f32, float32, bf16, bfloat16, f16, float16, fp16, f64.
std::optional<DType> parse_float_dtype(std::string_view name);
/// F64, F32, F16, BF16: the types ckptkit computes with.
bool is_float(DType t);

// Scalar conversions; to-16-bit conversions round to nearest even and keep NaN a NaN.
/// Exact: bf16 is the top half of a float32 (inline: the quantization kernels call it per value).
inline float bf16_to_f32(std::uint16_t h) {
  return std::bit_cast<float>(std::uint32_t{h} << 16);
}
/// Inline too: merge and the quantizers call it per value.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  // Round to nearest even: add 0x7fff plus the lowest kept bit; overflow carries into the exponent.
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);

/// Decodes float bytes of type `t` into f32 (F64 is rounded to nearest). BF16 and F16 run on
/// `path`'s vector kernels (core/convert_kernels.hpp), the same bits on every path.
void decode_to_f32(DType t, std::span<const std::byte> bytes, std::span<float> out,
                   SimdPath path = active_simd_path());
/// Decodes float bytes into f64, exactly.
void decode_to_f64(DType t, std::span<const std::byte> bytes, std::span<double> out);
/// Encodes f32 values as type `t` (round to nearest even), into `out` of n*dtype_size(t) bytes.
void encode_from_f32(DType t, std::span<const float> in, std::span<std::byte> out,
                     SimdPath path = active_simd_path());
/// Encodes f64 values as type `t` with one rounding (round to nearest even; to 16 bits through f32
/// rounded to odd, so never twice), into `out` of n*dtype_size(t) bytes; with `stored` (n
/// values), also the values as stored. BF16/F16 on `path`'s vector kernels, the same bits on
/// every path.
void encode_from_f64(DType t, std::span<const double> in, std::span<std::byte> out,
                     std::span<double> stored = {}, SimdPath path = active_simd_path());
/// Converts float bytes between float types with one rounding (via f64 when widening from F64).
std::vector<std::byte> convert_float_bytes(DType from, DType to, std::span<const std::byte> in);

}  // namespace ckpt
