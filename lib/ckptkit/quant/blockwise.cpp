#include "ckptkit/quant/blockwise.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "ckptkit/core/error.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"

namespace ckpt::quant {
namespace {

bool is_pow2(std::int64_t v) {
  return v > 0 && (v & (v - 1)) == 0;
}

// Codes of one block for a codebook of NM + 1 levels (NM midpoints): the count of midpoints
// strictly below x * inv. With `out_levels`, also the level of each code (a select per midpoint:
// exactly lv[code], as dequantize() reads it). Branch-free so the compiler vectorizes the loop.
template <int NM>
void encode_small(const float* x, std::int64_t n, float inv, const float* mids, const float* lv,
                  std::uint8_t* codes, float* out_levels) {
  float m[NM], l[NM + 1];
  for (int k = 0; k < NM; ++k)
    m[k] = mids[k];
  for (int k = 0; k <= NM; ++k)
    l[k] = lv[k];
  if (!out_levels) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = x[i] * inv;
      int c = 0;
      for (int k = 0; k < NM; ++k)
        c += v > m[k] ? 1 : 0;
      codes[i] = static_cast<std::uint8_t>(c);
    }
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i] * inv;
    int c = 0;
    float y = l[0];
    for (int k = 0; k < NM; ++k) {
      c += v > m[k] ? 1 : 0;
      y = v > m[k] ? l[k + 1] : y;  // midpoints ascend: the last one below v picks the level
    }
    codes[i] = static_cast<std::uint8_t>(c);
    out_levels[i] = y;
  }
}

// Codes of one block (and, with `out_levels`, their levels).
void encode_block(const Codebook& cb, const float* x, std::int64_t n, float scale,
                  std::uint8_t* codes, float* out_levels) {
  const float* lv = cb.levels().data();
  if (scale == 0.0f) {
    std::fill(codes, codes + n, cb.zero_code());
    if (out_levels) std::fill(out_levels, out_levels + n, lv[cb.zero_code()]);
    return;
  }
  const float inv = 1.0f / scale;
  const float* mids = cb.midpoints().data();
  switch (cb.size()) {  // 16 levels (NF4) take the fused kernel of nf4_kernel.hpp instead
    case 15:
      return encode_small<14>(x, n, inv, mids, lv, codes, out_levels);
    case 8:
      return encode_small<7>(x, n, inv, mids, lv, codes, out_levels);
    case 7:
      return encode_small<6>(x, n, inv, mids, lv, codes, out_levels);
    case 4:
      return encode_small<3>(x, n, inv, mids, lv, codes, out_levels);
    case 3:
      return encode_small<2>(x, n, inv, mids, lv, codes, out_levels);
    default:
      for (std::int64_t i0 = 0; i0 < n; i0 += 16) {  // larger books: batched search
        const std::int64_t k = std::min<std::int64_t>(16, n - i0);
        float v[16];
        for (std::int64_t j = 0; j < k; ++j)
          v[j] = x[i0 + j] * inv;
        cb.encode_many(v, static_cast<std::size_t>(k), codes + i0);
      }
      if (out_levels)
        for (std::int64_t i = 0; i < n; ++i)
          out_levels[i] = lv[codes[i]];
  }
}

// MSB-first packing of n codes into `out` (which starts on a byte boundary).
void pack_into(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out) {
  if (bits == 8) {
    std::copy(codes, codes + n, out);
    return;
  }
  if (bits == 4) {
    std::int64_t i = 0;
    for (; i + 1 < n; i += 2)
      out[i / 2] = static_cast<std::uint8_t>((codes[i] << 4) | codes[i + 1]);
    if (i < n) out[i / 2] = static_cast<std::uint8_t>(codes[i] << 4);
    return;
  }
  std::uint32_t acc = 0;
  int have = 0;
  std::int64_t o = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    acc = (acc << bits) | codes[i];
    have += bits;
    while (have >= 8) {
      out[o++] = static_cast<std::uint8_t>(acc >> (have - 8));
      have -= 8;
    }
  }
  if (have > 0) out[o] = static_cast<std::uint8_t>(acc << (8 - have));
}

void unpack_from(const std::uint8_t* in, std::int64_t n, int bits, std::uint8_t* codes) {
  if (bits == 8) {
    std::copy(in, in + n, codes);
    return;
  }
  if (bits == 4) {
    for (std::int64_t i = 0; i < n; ++i)
      codes[i] = static_cast<std::uint8_t>((i & 1) ? (in[i / 2] & 0x0F) : (in[i / 2] >> 4));
    return;
  }
  const std::uint32_t mask = (1u << bits) - 1;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t bit = i * bits;
    const std::int64_t byte = bit / 8;
    const int shift = static_cast<int>(bit % 8);
    // Up to 16 bits span the field (bits <= 8).
    std::uint32_t w = static_cast<std::uint32_t>(in[byte]) << 8;
    if (shift + bits > 8) w |= in[byte + 1];
    codes[i] = static_cast<std::uint8_t>((w >> (16 - shift - bits)) & mask);
  }
}

std::int64_t packed_bytes(std::int64_t n, int bits) {
  return (n * bits + 7) / 8;
}

float round_to(DType t, float v) {
  if (t == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (t == DType::F16) return f16_to_f32(f32_to_f16(v));
  return v;
}

[[noreturn]] void fail_non_finite(std::int64_t i, bool nan) {
  fail(ErrorKind::Format, "element " + std::to_string(i) + " is " + (nan ? "NaN" : "infinite") +
                              ": cannot quantize non-finite values");
}

// Inputs of quantize_source(): the element count, a finiteness check that names the first bad
// element, the absmax of every block, a block as float32 (a pointer into the input, or widened
// into `scratch`) and the fused 16-level kernel on a run of blocks.
struct F32Source {
  static constexpr bool kAbsmaxSeesNonFinite = true;  // as bf16: magnitudes compared as integers
  std::span<const float> x;
  std::int64_t size() const { return static_cast<std::int64_t>(x.size()); }
  void check_finite() const {
    if (const auto bad = first_non_finite(x); bad >= 0)
      fail_non_finite(bad, std::isnan(x[static_cast<std::size_t>(bad)]));
  }
  void absmax(std::int64_t block, float* out) const {
    f32_block_absmax(x.data(), size(), block, out);
  }
  const float* block(std::int64_t i0, std::int64_t, float*) const { return x.data() + i0; }
  void encode_pack16(const Book16& book, std::int64_t i0, std::int64_t n, std::int64_t block,
                     const float* inv, const float* s, std::uint8_t* out, LaneSums* err) const {
    encode_pack_nf4_blocks(book, x.data() + i0, n, block, inv, s, out, err);
  }
};

// bf16 read in place (no float32 copy of the tensor): the block absmax compares the 15 magnitude
// bits as integers, and a block with Inf/NaN gets an Inf/NaN absmax (the caller then looks for
// the element); the fused kernel widens 16 values at a time. The mapped bytes need not be
// 2-aligned.
struct Bf16Source {
  static constexpr bool kAbsmaxSeesNonFinite = true;
  std::span<const std::byte> bytes;

  std::int64_t size() const { return static_cast<std::int64_t>(bytes.size() / 2); }
  void check_finite() const {
    for (std::int64_t i = 0; i < size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      if ((h & 0x7FFF) >= 0x7F80) fail_non_finite(i, (h & 0x7FFF) > 0x7F80);
    }
  }
  void absmax(std::int64_t block, float* out) const {
    bf16_block_absmax(bytes.data(), size(), block, out);
  }
  const float* block(std::int64_t i0, std::int64_t n, float* scratch) const {
    decode_to_f32(DType::BF16,
                  bytes.subspan(static_cast<std::size_t>(2 * i0), static_cast<std::size_t>(2 * n)),
                  {scratch, static_cast<std::size_t>(n)});
    return scratch;
  }
  void encode_pack16(const Book16& book, std::int64_t i0, std::int64_t n, std::int64_t block,
                     const float* inv, const float* s, std::uint8_t* out, LaneSums* err) const {
    encode_pack_nf4_blocks_bf16(book, bytes.data() + 2 * i0, n, block, inv, s, out, err);
  }
};

}  // namespace

std::string Scheme::name() const {
  const char* prefix = family == Family::NF ? "nf" : family == Family::FP ? "fp" : "int";
  return prefix + std::to_string(bits);
}

Scheme Scheme::parse(const std::string& text) {
  Scheme s;
  std::string digits;
  if (text.rfind("nf", 0) == 0) {
    s.family = Family::NF;
    digits = text.substr(2);
  } else if (text.rfind("int", 0) == 0) {
    s.family = Family::INT;
    digits = text.substr(3);
  } else if (text == "fp4") {
    return {Family::FP, 4};
  } else {
    fail(ErrorKind::Usage,
         "--scheme: unknown scheme '" + text + "' (nf4, nf3, nf2, int8, int4, fp4, lossless)");
  }
  if (digits.size() != 1 || digits[0] < '2' || digits[0] > '8')
    fail(ErrorKind::Usage, "--scheme: '" + text + "' needs a width of 2..8 bits (e.g. nf4, int8)");
  s.bits = digits[0] - '0';
  return s;
}

void QuantSpec::validate() const {
  if (!is_pow2(block) || block < 16 || block > 4096)
    fail(ErrorKind::Usage,
         "--block: " + std::to_string(block) + " is not a power of two in 16..4096");
  if (dq == DoubleQuant::Bnb &&
      (!is_pow2(nested_block) || nested_block < 16 || nested_block > 4096))
    fail(ErrorKind::Usage,
         "nested block " + std::to_string(nested_block) + " is not a power of two in 16..4096");
  if (dq == DoubleQuant::Lq) {
    if (lq_bits < 2 || lq_bits > 8)
      fail(ErrorKind::Usage, "--lq-scale-bits: " + std::to_string(lq_bits) + " is not in 2..8");
    if (!is_pow2(lq_group) || lq_group > 4096)
      fail(ErrorKind::Usage,
           "--lq-group: " + std::to_string(lq_group) + " is not a power of two in 1..4096");
    if (lq_scale_dtype != DType::F32 && lq_scale_dtype != DType::BF16 &&
        lq_scale_dtype != DType::F16)
      fail(ErrorKind::Usage, "--lq-scale-dtype must be fp32, bf16 or fp16");
  }
}

std::vector<float> scheme_levels(const Scheme& s) {
  if (s.family == Family::FP) return {fp4_table().begin(), fp4_table().end()};
  if (s.family == Family::NF) {
    if (s.bits == 4) return {nf4_table().begin(), nf4_table().end()};
    return normal_float_levels(s.bits);
  }
  return int_levels(s.bits);
}

std::vector<float> QuantizedTensor::block_scales() const {
  if (spec.dq == DoubleQuant::None) return absmax;
  const std::int64_t nb = blocks();
  const std::int64_t group = spec.dq == DoubleQuant::Bnb ? spec.nested_block : spec.lq_group;
  const float levels = static_cast<float>((1 << spec.lq_bits) - 1);
  std::vector<float> s(static_cast<std::size_t>(nb));
  // Group by group (one nested scale each), with no division per block.
  for (std::int64_t lo = 0, g = 0; lo < nb; lo += group, ++g) {
    const float m = nested_absmax[static_cast<std::size_t>(g)];
    const auto first = static_cast<std::size_t>(lo);
    const auto last = static_cast<std::size_t>(std::min(nb, lo + group));
    if (spec.dq == DoubleQuant::Bnb)
      for (std::size_t i = first; i < last; ++i) {
        const float v = nested_map[scale_codes[i]] * m;
        s[i] = v + offset;
      }
    else
      for (std::size_t i = first; i < last; ++i) {
        const float v = static_cast<float>(scale_codes[i]) * m;
        s[i] = v / levels + offset;
      }
  }
  return s;
}

std::int64_t first_non_finite(std::span<const float> x) {
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i])) return static_cast<std::int64_t>(i);
  return -1;
}

template <class Source>
QuantizedTensor quantize_source(const Source& x, const QuantSpec& spec, ErrorStats* err) {
  spec.validate();
  if constexpr (!Source::kAbsmaxSeesNonFinite) x.check_finite();
  QuantizedTensor q;
  q.spec = spec;
  q.numel = x.size();
  q.codebook = scheme_levels(spec.scheme);
  const bool fp4 = spec.scheme.family == Family::FP;  // sign-magnitude codes, not a sorted book
  const Codebook cb = fp4 ? Codebook() : Codebook(q.codebook);
  const int bits = spec.scheme.bits;
  const std::int64_t B = spec.block, n = q.numel, nb = q.blocks();

  std::vector<float> s0(static_cast<std::size_t>(nb));
  x.absmax(B, s0.data());
  if constexpr (Source::kAbsmaxSeesNonFinite)  // an Inf/NaN element makes its block's absmax one
    if (std::any_of(s0.begin(), s0.end(), [](float v) { return !std::isfinite(v); }))
      x.check_finite();

  std::vector<float> lq_scales;  // LQ-LoRA: codes against the reconstructed scale
  if (spec.dq == DoubleQuant::None) {
    q.absmax = s0;
  } else if (spec.dq == DoubleQuant::Bnb) {
    double sum = 0;
    for (float v : s0)
      sum += v;
    q.offset = nb ? static_cast<float>(sum / static_cast<double>(nb)) : 0.0f;
    q.nested_map = dynamic_map();
    const Codebook dyn(q.nested_map);
    const std::int64_t NB = spec.nested_block, nn = (nb + NB - 1) / NB;
    q.nested_absmax.resize(static_cast<std::size_t>(nn));
    q.scale_codes.resize(static_cast<std::size_t>(nb));
    std::vector<float> d(static_cast<std::size_t>(nb));
    for (std::int64_t b = 0; b < nb; ++b)
      d[static_cast<std::size_t>(b)] = s0[static_cast<std::size_t>(b)] - q.offset;
    f32_block_absmax(d.data(), nb, NB, q.nested_absmax.data());
    for (std::int64_t g = 0; g < nn; ++g) {
      const std::int64_t lo = g * NB, cnt = std::min(NB, nb - lo);
      const float m = q.nested_absmax[static_cast<std::size_t>(g)];
      const float inv = m == 0.0f ? 0.0f : 1.0f / m;
      std::uint8_t* sc = q.scale_codes.data() + lo;
      if (m == 0.0f) {
        std::fill(sc, sc + cnt, dyn.zero_code());
        continue;
      }
      float* dg = d.data() + lo;  // normalised in place, then encoded in one batch
      for (std::int64_t b = 0; b < cnt; ++b)
        dg[b] *= inv;
      dyn.encode_many(dg, static_cast<std::size_t>(cnt), sc);
    }
  } else {
    float mn = nb ? s0[0] : 0.0f;
    for (float v : s0)
      mn = std::min(mn, v);
    q.offset = mn;
    const std::int64_t G = spec.lq_group, ng = (nb + G - 1) / G;
    const int levels = (1 << spec.lq_bits) - 1;
    q.nested_absmax.resize(static_cast<std::size_t>(ng));
    q.scale_codes.resize(static_cast<std::size_t>(nb));
    for (std::int64_t g = 0; g < ng; ++g) {
      const std::int64_t lo = g * G, cnt = std::min(G, nb - lo);
      float m = 0.0f;
      for (std::int64_t b = lo; b < lo + cnt; ++b)
        m = std::max(m, s0[static_cast<std::size_t>(b)] - q.offset);
      const float s1 = round_to(spec.lq_scale_dtype, m);
      q.nested_absmax[static_cast<std::size_t>(g)] = s1;
      for (std::int64_t b = lo; b < lo + cnt; ++b) {
        const float d = s0[static_cast<std::size_t>(b)] - q.offset;
        const float r = s1 == 0.0f ? 0.0f : std::nearbyint(d * static_cast<float>(levels) / s1);
        q.scale_codes[static_cast<std::size_t>(b)] =
            static_cast<std::uint8_t>(std::clamp(r, 0.0f, static_cast<float>(levels)));
      }
    }
    lq_scales = q.block_scales();
  }

  // What the weight codes are chosen against.
  const std::vector<float>& code_scale = spec.dq == DoubleQuant::Lq ? lq_scales : s0;
  q.packed.assign(static_cast<std::size_t>(packed_bytes(n, bits)), std::byte{0});
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(B));
  std::vector<float> scratch(static_cast<std::size_t>(B));  // one widened block (bf16 input)
  std::vector<float> y(static_cast<std::size_t>(B));        // the block's levels (err)
  std::vector<float> recon;
  if (err) recon = spec.dq == DoubleQuant::None ? q.absmax : q.block_scales();
  // NF4 and any other sorted 16-level book: codes, packing and errors in one fused pass.
  const bool fused = !fp4 && bits == 4 && cb.size() == 16;
  const std::optional<Book16> book =
      fused ? std::optional<Book16>(std::in_place, cb.levels(), cb.midpoints()) : std::nullopt;
  // Error sums over the whole tensor in 16 lanes (blocks are multiples of 16 long, so element i
  // lands in lane i % 16), folded once in a fixed order: deterministic for any threads.
  LaneSums sums;
  std::vector<float> inv;  // the fused kernel's per-block 1 / scale
  if (fused) {
    inv.resize(static_cast<std::size_t>(nb));
    for (std::size_t b = 0; b < inv.size(); ++b)
      inv[b] = code_scale[b] == 0.0f ? 0.0f : 1.0f / code_scale[b];
  }
  for (std::int64_t b = 0; b < nb;) {
    const std::int64_t cnt = std::min(B, n - b * B);
    const float scale = code_scale[static_cast<std::size_t>(b)];
    const float s = err ? recon[static_cast<std::size_t>(b)] : 0.0f;  // what dequantize() uses
    std::uint8_t* out = q.packed_u8() + b * B * bits / 8;
    if (fused && scale != 0.0f) {  // the run of blocks from b with a non-zero scale, in one call
      std::int64_t e = b + 1;
      while (e < nb && code_scale[static_cast<std::size_t>(e)] != 0.0f)
        ++e;
      const auto at = static_cast<std::size_t>(b);
      x.encode_pack16(*book, b * B, std::min(e * B, n) - b * B, B, inv.data() + at,
                      err ? recon.data() + at : nullptr, out, err ? &sums : nullptr);
      b = e;
      continue;
    }
    const float* xb = x.block(b * B, cnt, scratch.data());
    if (fp4)  // bnb's scale 0 gives 0 * inf = NaN, which its tree codes as 0 (+0.0), as here
      encode_fp4(xb, static_cast<std::size_t>(cnt), scale == 0.0f ? 0.0f : 1.0f / scale,
                 codes.data(), err ? y.data() : nullptr);
    else
      encode_block(cb, xb, cnt, scale, codes.data(), err ? y.data() : nullptr);
    pack_into(codes.data(), cnt, bits, out);
    if (err) sums.add(xb, y.data(), s, cnt);
    ++b;
  }
  const double se = sums.sum_se(), sx = sums.sum_sx(), mx = sums.max_abs;
  if (err) {
    err->mse = n ? se / static_cast<double>(n) : 0;
    err->rel_fro = sx > 0 ? std::sqrt(se / sx) : (se > 0 ? INFINITY : 0);
    err->max_abs = mx;
    err->sqnr_db = se > 0 ? 10.0 * std::log10(sx / se) : INFINITY;
  }
  return q;
}

QuantizedTensor quantize(std::span<const float> x, const QuantSpec& spec, ErrorStats* err) {
  return quantize_source(F32Source{x}, spec, err);
}

QuantizedTensor quantize_bf16(std::span<const std::byte> bf16, const QuantSpec& spec,
                              ErrorStats* err) {
  return quantize_source(Bf16Source{bf16}, spec, err);
}

void dequantize(const QuantizedTensor& q, std::span<float> out) {
  CKPT_ASSERT(static_cast<std::int64_t>(out.size()) == q.numel);
  const auto scales = q.block_scales();
  const int bits = q.spec.scheme.bits;
  const std::int64_t B = q.spec.block, n = q.numel;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(B));
  const float* lv = q.codebook.data();
  const std::size_t L = q.codebook.size();
  if (bits == 4 && L == 16) {
    // Fast path (NF4, any 16-level book): every nibble is a valid code.
    for (std::int64_t b = 0; b < q.blocks(); ++b)
      dequantize16(q.packed_u8() + b * B / 2, std::min(B, n - b * B),
                   scales[static_cast<std::size_t>(b)], lv, out.data() + b * B);
    return;
  }
  for (std::int64_t b = 0; b < q.blocks(); ++b) {
    const std::int64_t cnt = std::min(B, n - b * B);
    unpack_from(q.packed_u8() + b * B * bits / 8, cnt, bits, codes.data());
    const float s = scales[static_cast<std::size_t>(b)];
    float* o = out.data() + b * B;
    for (std::int64_t i = 0; i < cnt; ++i) {
      const std::size_t c = codes[static_cast<std::size_t>(i)];
      if (c >= L)
        fail(ErrorKind::Format, "code " + std::to_string(c) + " is outside the " +
                                    std::to_string(L) + "-level codebook");
      o[i] = q.codebook[c] * s;
    }
  }
}

std::vector<std::uint8_t> pack_codes(std::span<const std::uint8_t> codes, int bits) {
  std::vector<std::uint8_t> out(
      static_cast<std::size_t>(packed_bytes(static_cast<std::int64_t>(codes.size()), bits)), 0);
  pack_into(codes.data(), static_cast<std::int64_t>(codes.size()), bits, out.data());
  return out;
}

std::vector<std::uint8_t> unpack_codes(std::span<const std::uint8_t> packed, int bits,
                                       std::int64_t n) {
  CKPT_ASSERT(static_cast<std::int64_t>(packed.size()) >= packed_bytes(n, bits));
  std::vector<std::uint8_t> out(static_cast<std::size_t>(n));
  unpack_from(packed.data(), n, bits, out.data());
  return out;
}

double formula_bits_per_param(const QuantSpec& spec) {
  const double b = spec.scheme.bits, B0 = spec.block;
  switch (spec.dq) {
    case DoubleQuant::None:
      return b + 32.0 / B0;
    case DoubleQuant::Bnb:
      return b + 8.0 / B0 + 32.0 / (B0 * spec.nested_block);
    case DoubleQuant::Lq: {
      const double b1 = spec.lq_scale_dtype == DType::F32 ? 32.0 : 16.0;
      return b + spec.lq_bits / B0 + b1 / (B0 * spec.lq_group);
    }
  }
  return 0;
}

double stored_bits_per_param(const QuantizedTensor& q) {
  double bytes =
      static_cast<double>(q.packed.size()) + 4.0 * static_cast<double>(q.codebook.size());
  const double nb = static_cast<double>(q.blocks());
  switch (q.spec.dq) {
    case DoubleQuant::None:
      bytes += 4.0 * nb;
      break;
    case DoubleQuant::Bnb:
      bytes += nb + 4.0 * static_cast<double>(q.nested_absmax.size()) +
               4.0 * static_cast<double>(q.nested_map.size()) + 4.0;
      break;
    case DoubleQuant::Lq:
      bytes += static_cast<double>(packed_bytes(q.blocks(), q.spec.lq_bits)) +
               static_cast<double>(dtype_size(q.spec.lq_scale_dtype)) *
                   static_cast<double>(q.nested_absmax.size()) +
               4.0;
      break;
  }
  return q.numel ? 8.0 * bytes / static_cast<double>(q.numel) : 0.0;
}

RowwiseInt8 quantize_rowwise_int8(std::span<const float> x, std::int64_t rows, std::int64_t cols) {
  CKPT_ASSERT(static_cast<std::int64_t>(x.size()) == rows * cols);
  if (const auto bad = first_non_finite(x); bad >= 0)
    fail(ErrorKind::Format,
         "element " + std::to_string(bad) + " is not finite: cannot quantize non-finite values");
  RowwiseInt8 q;
  q.cb.resize(x.size());
  q.scb.resize(static_cast<std::size_t>(rows));
  f32_block_absmax(x.data(), rows * cols, cols, q.scb.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    const float m = q.scb[static_cast<std::size_t>(r)];
    const float k = m == 0.0f ? 0.0f : 127.0f / m;
    for (std::int64_t c = 0; c < cols; ++c)
      q.cb[static_cast<std::size_t>(r * cols + c)] =
          static_cast<std::int8_t>(std::clamp(std::nearbyint(row[c] * k), -127.0f, 127.0f));
  }
  return q;
}

void dequantize_rowwise_int8(const RowwiseInt8& q, std::int64_t cols, std::span<float> out) {
  CKPT_ASSERT(out.size() == q.cb.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = (static_cast<float>(q.cb[i]) * q.scb[i / static_cast<std::size_t>(cols)]) * kInv127;
}

ErrorStats error_stats(std::span<const float> ref, std::span<const float> approx) {
  CKPT_ASSERT(ref.size() == approx.size());
  double se = 0, sx = 0, mx = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = static_cast<double>(ref[i]) - static_cast<double>(approx[i]);
    se += e * e;
    sx += static_cast<double>(ref[i]) * ref[i];
    mx = std::max(mx, std::fabs(e));
  }
  ErrorStats s;
  s.mse = ref.empty() ? 0 : se / static_cast<double>(ref.size());
  s.rel_fro = sx > 0 ? std::sqrt(se / sx) : (se > 0 ? INFINITY : 0);
  s.max_abs = mx;
  s.sqnr_db = se > 0 ? 10.0 * std::log10(sx / se) : INFINITY;
  return s;
}

}  // namespace ckpt::quant
