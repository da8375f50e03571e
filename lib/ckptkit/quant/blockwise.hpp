// Blockwise absmax quantization with optional double quantization of the block scales, in the
// two published styles:
//  - bitsandbytes (QLoRA): offset = mean(absmax); absmax - offset quantized blockwise (blocks of
//    256) with the signed 8-bit dynamic map and an fp32 nested absmax per block; the weight codes
//    are chosen against the true fp32 absmax.
//  - LQ-LoRA: offset = min(absmax); absmax - offset stored as unsigned b0-bit integers against a
//    per-group (B1 blocks) scale s1 kept in bf16/fp16/fp32; the weight codes are chosen against
//    the reconstructed scale (so values may clip to the end levels).
// The tensor is flattened row-major; a partial last block (or nested block / group) gets its own
// scale over the elements it has, exactly as bitsandbytes does: nothing is padded with data.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/quant/codebook.hpp"

namespace ckpt::quant {

enum class Family { NF, INT, FP };
enum class DoubleQuant { None, Bnb, Lq };

/// A codebook family and its width: nf4, nf3, nf2 (nf2..nf8), int8, int4 (int2..int8), and
/// bitsandbytes' fp4 (4 bits only).
struct Scheme {
  Family family = Family::NF;
  int bits = 4;
  std::string name() const;
  /// Parses "nf4", "int8", ...; nullopt-like failure throws Error(Usage).
  static Scheme parse(const std::string& text);
};

struct QuantSpec {
  Scheme scheme;
  int block = 64;  // power of two, 16..4096
  DoubleQuant dq = DoubleQuant::None;
  int nested_block = 256;             // bnb: absmax codes per nested fp32 absmax
  int lq_bits = 8;                    // LQ: b0, bits of each scale code (2..8)
  int lq_group = 256;                 // LQ: B1, blocks per second-level scale (power of two)
  DType lq_scale_dtype = DType::F32;  // LQ: b1, storage type of the second-level scales
  /// Throws Error(Usage) for an invalid block size or LQ parameters.
  void validate() const;
};

/// The levels of a scheme, index = code: sorted for NF and INT (NF4 = bitsandbytes' table
/// exactly), bitsandbytes' sign-magnitude order for FP4.
std::vector<float> scheme_levels(const Scheme& s);

/// A quantized tensor in memory (layout-independent).
struct QuantizedTensor {
  QuantSpec spec;
  std::int64_t numel = 0;
  std::vector<float> codebook;    // levels; code = index
  std::vector<std::byte> packed;  // codes, `bits` wide, MSB-first (bnb: high nibble first),
                                  // the bytes a layout stores as they are
  std::vector<float> absmax;      // DoubleQuant::None: fp32 scale per block
  std::vector<std::uint8_t>
      scale_codes;                   // Bnb: dynamic-map code per block; Lq: b0-bit code per block
  std::vector<float> nested_absmax;  // Bnb: per nested block; Lq: s1 per group (already rounded)
  std::vector<float> nested_map;     // Bnb: the dynamic map (256)
  float offset = 0.0f;               // Bnb: mean; Lq: min

  std::int64_t blocks() const { return (numel + spec.block - 1) / spec.block; }
  /// `packed` as bytes to compute with.
  const std::uint8_t* packed_u8() const {
    return reinterpret_cast<const std::uint8_t*>(packed.data());
  }
  std::uint8_t* packed_u8() { return reinterpret_cast<std::uint8_t*>(packed.data()); }
  /// The scale each block dequantizes with (float32 arithmetic, the order documented in
  /// docs/formats-quant.md: Bnb map[q]*nested + offset; Lq q*s1/(2^b0-1) + offset).
  std::vector<float> block_scales() const;
};

struct ErrorStats;
/// Quantizes `x` (finite values; Error(Format) naming nothing otherwise: the caller adds the
/// tensor) with `spec`. When `err` is given, the error of the dequantized values (exactly what
/// dequantize() returns) is measured in the same pass, saving a dequantization for reports.
QuantizedTensor quantize(std::span<const float> x, const QuantSpec& spec,
                         ErrorStats* err = nullptr);
/// quantize() of a bf16 tensor given as its raw little-endian bytes (2 per element, any
/// alignment), without widening the whole tensor to float32 first: the same result, bit for bit.
QuantizedTensor quantize_bf16(std::span<const std::byte> bf16, const QuantSpec& spec,
                              ErrorStats* err = nullptr);
/// Dequantizes into `out` (numel values): out[i] = codebook[code[i]] * scale[block(i)] in float32.
void dequantize(const QuantizedTensor& q, std::span<float> out);

/// Packs `codes` (each < 2^bits) MSB-first into ceil(n*bits/8) bytes; unpack is the inverse.
std::vector<std::uint8_t> pack_codes(std::span<const std::uint8_t> codes, int bits);
std::vector<std::uint8_t> unpack_codes(std::span<const std::uint8_t> packed, int bits,
                                       std::int64_t n);

/// bits/param by the published formula b + s/B0 + n/(B0*B1) (s, n: scale and nested-scale bits).
double formula_bits_per_param(const QuantSpec& spec);
/// bits/param of what is actually stored for this tensor: codes, scales, nested scales, offset
/// and codebook (the per-tensor constants the formula leaves out), over numel.
double stored_bits_per_param(const QuantizedTensor& q);

/// Row-wise symmetric int8 (bitsandbytes LLM.int8 / Linear8bitLt storage): CB = round(x * 127 /
/// absmax_row) with round-half-even, SCB = absmax_row; dequantization CB * SCB * (1/127 as f32).
struct RowwiseInt8 {
  std::vector<std::int8_t> cb;
  std::vector<float> scb;
};
RowwiseInt8 quantize_rowwise_int8(std::span<const float> x, std::int64_t rows, std::int64_t cols);
void dequantize_rowwise_int8(const RowwiseInt8& q, std::int64_t cols, std::span<float> out);
inline constexpr float kInv127 = 7.874015718698502e-3f;

/// Error of a reconstruction: relative Frobenius error, max abs error, SQNR in dB, MSE.
struct ErrorStats {
  double rel_fro = 0, max_abs = 0, sqnr_db = 0, mse = 0;
};
ErrorStats error_stats(std::span<const float> ref, std::span<const float> approx);

/// Index of the first non-finite value, or -1.
std::int64_t first_non_finite(std::span<const float> x);

}  // namespace ckpt::quant
