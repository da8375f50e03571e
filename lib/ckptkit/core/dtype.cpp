#include "ckptkit/core/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "ckptkit/core/convert_kernels.hpp"
#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

struct DTypeEntry {
  DType type;
  std::string_view name;
  std::size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U64, "U64", 8},         {DType::U32, "U32", 4},
    {DType::U16, "U16", 2},   {DType::U8, "U8", 1},           {DType::Bool, "BOOL", 1},
};

const DTypeEntry& entry(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e;
  CKPT_ASSERT(false);
  return kDTypes[0];
}

template <class T>
void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace

std::size_t dtype_size(DType t) {
  return entry(t).size;
}
std::string_view dtype_name(DType t) {
  return entry(t).name;
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes)
    if (e.name == name) return e.type;
  return std::nullopt;
}

std::optional<DType> parse_float_dtype(std::string_view name) {
  if (name == "f32" || name == "F32" || name == "float32" || name == "fp32") return DType::F32;
  if (name == "bf16" || name == "BF16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "F16" || name == "float16" || name == "fp16") return DType::F16;
  if (name == "f64" || name == "F64" || name == "float64" || name == "fp64") return DType::F64;
  return std::nullopt;
}

bool is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: value = man * 2^-24, exact in f32.
    float v = static_cast<float>(man) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

std::uint16_t f32_to_f16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<std::uint16_t>((abs >> 13) & 0x3ffu);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): scale by 2^24 and round to an integer, ties to even.
    const float a = std::bit_cast<float>(abs);
    const float scaled = a * 0x1p24f;  // exact: a < 2^-14 so scaled < 2^10
    const float r = std::nearbyint(scaled);
    return sign | static_cast<std::uint16_t>(r);
  }
  // Normal: rebias exponent and round mantissa from 23 to 10 bits, ties to even.
  std::uint32_t v = abs - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return sign | static_cast<std::uint16_t>(v >> 13);
}

namespace {

// Branch-free element kernels for the span conversions below: the reference of the vector kernels
// (convert_kernels.cpp does the same operations lane by lane) and their tails. tests/core/
// test_dtype.cpp checks every path bit for bit against the scalar functions above on all 16-bit
// patterns and on f32 edge and random patterns.
// 16-bit values travel through memcpy'd u16 arrays (no aliasing of the byte buffer).

inline std::uint32_t bf16_bits_to_f32_bits(std::uint16_t h) {
  return std::uint32_t{h} << 16;
}

inline std::uint32_t f16_bits_to_f32_bits(std::uint16_t hh) {
  const std::uint32_t h = hh;
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x3ffu;
  // Subnormal or zero: man · 2^-24, exact in f32 (int → float of a 10-bit integer is exact).
  const float sub = static_cast<float>(static_cast<std::int32_t>(man)) * 0x1p-24f;
  const std::uint32_t sub_bits = std::bit_cast<std::uint32_t>(sub);
  const std::uint32_t normal = (exp + 112u) << 23 | (man << 13);
  const std::uint32_t special = 0x7f800000u | (man << 13);
  const std::uint32_t mag = exp == 0 ? sub_bits : (exp == 31 ? special : normal);
  return sign | mag;
}

inline std::uint16_t f32_bits_to_f16(std::uint32_t u) {
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7fffffffu;
  const std::uint32_t nan = 0x7e00u | ((abs >> 13) & 0x3ffu);
  // Subnormal result: round abs · 2^24 (< 2^10, exact) to an integer, ties to even, by adding and
  // subtracting 2^23 (exact for 0 <= x < 2^23 in the default rounding mode, like nearbyint; no
  // compiler folds (x + c) − c without -ffast-math, which this project never uses).
  const float scaled = std::bit_cast<float>(abs < 0x38800000u ? abs : 0u) * 0x1p24f;
  const float r = (scaled + 0x1p23f) - 0x1p23f;
  const std::uint32_t sub = static_cast<std::uint32_t>(static_cast<std::int32_t>(r));
  // Normal result: rebias the exponent, round the mantissa from 23 to 10 bits, ties to even.
  const std::uint32_t v = abs - (112u << 23);
  const std::uint32_t normal = (v + 0xfffu + ((v >> 13) & 1u)) >> 13;
  std::uint32_t mag = abs < 0x38800000u ? sub : normal;
  mag = abs >= 0x477ff000u ? 0x7c00u : mag;
  mag = abs > 0x7f800000u ? nan : mag;
  return static_cast<std::uint16_t>(sign | mag);
}

// The element kernels go in as lambdas (not function pointers) so that they inline into the loop;
// 16-bit values are loaded/stored with memcpy, which compilers turn into plain vector moves.
template <class Kernel>
void decode16(const std::byte* p, float* out, std::size_t n, Kernel k) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = std::bit_cast<float>(k(h));
  }
}

template <class Kernel>
void encode16(const float* in, std::byte* p, std::size_t n, Kernel k) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = k(std::bit_cast<std::uint32_t>(in[i]));
    std::memcpy(p + 2 * i, &h, 2);
  }
}

void decode_f64(const std::byte* p, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    double d;
    std::memcpy(&d, p + 8 * i, 8);
    out[i] = static_cast<float>(d);
  }
}

void encode_f64(const float* in, std::byte* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const double d = in[i];
    std::memcpy(p + 8 * i, &d, 8);
  }
}

// Elements per stack block where a conversion goes through f32.
constexpr std::size_t kBlock = 1024;

/// d rounded to odd in f32 (24 bits ≥ 11 + 2 for f16, 8 + 2 for bf16): rounding that to nearest
/// even in 16 bits equals one correct rounding of d (no double rounding). The nearest float; one
/// step toward zero (magnitude bits minus one) when it is above |d|; the lowest bit set when still
/// inexact. Inf, NaN and d beyond the float range stay the plain cast. The reference of the
/// f64_to_f32_odd kernels.
float f64_to_f32_odd(double d) {
  const float f = static_cast<float>(d);
  const bool finite = std::isfinite(f);
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  u -= (finite && std::fabs(static_cast<double>(f)) > std::fabs(d)) ? 1u : 0u;
  u |= (finite && static_cast<double>(std::bit_cast<float>(u)) != d) ? 1u : 0u;
  return std::bit_cast<float>(u);
}

}  // namespace

void decode_to_f32(DType t, std::span<const std::byte> bytes, std::span<float> out, SimdPath path) {
  const std::size_t n = out.size();
  CKPT_ASSERT(bytes.size() == n * dtype_size(t));
  const std::byte* p = bytes.data();
  if (n == 0) return;
  const convert::Kernels* k = convert::kernels_for(path);
  switch (t) {
    case DType::F32:
      std::memcpy(out.data(), p, n * 4);
      return;
    case DType::BF16: {
      const std::size_t done = k ? k->bf16_to_f32(p, out.data(), n) : 0;
      decode16(p + 2 * done, out.data() + done, n - done,
               [](auto v) { return bf16_bits_to_f32_bits(v); });
      return;
    }
    case DType::F16: {
      const std::size_t done = k ? k->f16_to_f32(p, out.data(), n) : 0;
      decode16(p + 2 * done, out.data() + done, n - done,
               [](auto v) { return f16_bits_to_f32_bits(v); });
      return;
    }
    case DType::F64:
      decode_f64(p, out.data(), n);
      return;
    default:
      fail(ErrorKind::Unsupported,
           "dtype " + std::string(dtype_name(t)) + " is not a float type ckptkit computes with");
  }
}

void decode_to_f64(DType t, std::span<const std::byte> bytes, std::span<double> out) {
  const std::size_t n = out.size();
  CKPT_ASSERT(bytes.size() == n * dtype_size(t));
  if (t == DType::F64) {
    if (n) std::memcpy(out.data(), bytes.data(), n * 8);
    return;
  }
  // Widening f32 → f64 is exact; go through one small f32 block at a time.
  float tmp[kBlock];
  const std::size_t size = dtype_size(t);
  for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
    const std::size_t len = std::min(kBlock, n - i0);
    decode_to_f32(t, bytes.subspan(i0 * size, len * size), std::span<float>(tmp, len));
    for (std::size_t i = 0; i < len; ++i)
      out[i0 + i] = tmp[i];
  }
}

void encode_from_f32(DType t, std::span<const float> in, std::span<std::byte> out, SimdPath path) {
  const std::size_t n = in.size();
  CKPT_ASSERT(out.size() == n * dtype_size(t));
  std::byte* p = out.data();
  if (n == 0) return;
  const convert::Kernels* k = convert::kernels_for(path);
  switch (t) {
    case DType::F32:
      std::memcpy(p, in.data(), n * 4);
      return;
    case DType::BF16: {
      const std::size_t done = k ? k->f32_to_bf16(in.data(), p, n) : 0;
      encode16(in.data() + done, p + 2 * done, n - done,
               [](auto v) { return f32_to_bf16(std::bit_cast<float>(v)); });
      return;
    }
    case DType::F16: {
      const std::size_t done = k ? k->f32_to_f16(in.data(), p, n) : 0;
      encode16(in.data() + done, p + 2 * done, n - done, [](auto v) { return f32_bits_to_f16(v); });
      return;
    }
    case DType::F64:
      encode_f64(in.data(), p, n);
      return;
    default:
      fail(ErrorKind::Unsupported, "cannot encode floats as " + std::string(dtype_name(t)));
  }
}

void encode_from_f64(DType t, std::span<const double> in, std::span<std::byte> out,
                     std::span<double> stored, SimdPath path) {
  const std::size_t n = in.size();
  CKPT_ASSERT(out.size() == n * dtype_size(t));
  CKPT_ASSERT(stored.empty() || stored.size() == n);
  if (t == DType::F64) {
    if (n) std::memcpy(out.data(), in.data(), n * 8);
    if (!stored.empty()) std::copy(in.begin(), in.end(), stored.begin());
    return;
  }
  const convert::Kernels* k = convert::kernels_for(path);
  const std::size_t size = dtype_size(t);
  float tmp[kBlock];
  for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
    const std::size_t len = std::min(kBlock, n - i0);
    const double* d = in.data() + i0;
    if (t == DType::F32) {  // one rounding already
      for (std::size_t i = 0; i < len; ++i)
        tmp[i] = static_cast<float>(d[i]);
    } else {
      const std::size_t done = k ? k->f64_to_f32_odd(d, tmp, len) : 0;
      for (std::size_t i = done; i < len; ++i)
        tmp[i] = f64_to_f32_odd(d[i]);
    }
    const std::span<std::byte> bytes = out.subspan(i0 * size, len * size);
    encode_from_f32(t, std::span<const float>(tmp, len), bytes, path);
    if (stored.empty()) continue;
    decode_to_f32(t, bytes, std::span<float>(tmp, len), path);
    for (std::size_t i = 0; i < len; ++i)
      stored[i0 + i] = tmp[i];
  }
}

std::vector<std::byte> convert_float_bytes(DType from, DType to, std::span<const std::byte> in) {
  const std::size_t n = in.size() / dtype_size(from);
  std::vector<std::byte> out(n * dtype_size(to));
  if (from == to) {
    std::memcpy(out.data(), in.data(), in.size());
    return out;
  }
  if (from == DType::F64) {  // one rounding (F64 -> F16/BF16 through f32 could round twice)
    std::vector<double> d(n);
    decode_to_f64(from, in, d);
    encode_from_f64(to, d, out);
    return out;
  }
  std::vector<float> tmp(n);
  decode_to_f32(from, in, tmp);
  if (to == DType::F64) {
    for (std::size_t i = 0; i < n; ++i)
      store(out.data() + 8 * i, static_cast<double>(tmp[i]));
    return out;
  }
  encode_from_f32(to, tmp, out);
  return out;
}

}  // namespace ckpt
