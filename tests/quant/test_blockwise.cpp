// Blockwise quantization: packing golden bytes, a hand-computed NF4 example, bits/param formulas,
// double quantization in both styles, and NF4's error on Gaussian data against an expectation
// derived here by numerical integration.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/quant/blockwise.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using namespace ckpt::quant;

namespace {
QuantSpec spec_of(const std::string& scheme, int block, DoubleQuant dq) {
  QuantSpec s;
  s.scheme = Scheme::parse(scheme);
  s.block = block;
  s.dq = dq;
  return s;
}
double phi(double x) {
  return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

// E[(X - s*c(X/s))^2] per element for X ~ N(0,1) in blocks of B with s = block absmax and the
// codebook `lv` (nearest level). The block maximum is exact; the other B-1 elements are iid
// N(0,1) truncated to |x| < s, whose error integrates in closed form over each code's cell:
// integral of (x-a)^2 phi = (1+a^2) Phi(x) + (2a - x) phi(x). The outer integral over the density
// of s, B * 2phi(t) (2Phi(t)-1)^(B-1), is done by Simpson's rule; per element that gives
// (B-1) * integral of 2phi(t) (2Phi(t)-1)^(B-2) h(t) dt.
double expected_mse(const std::vector<float>& lv, int B) {
  auto F = [](double x, double a) { return (1 + a * a) * normal_cdf(x) + (2 * a - x) * phi(x); };
  auto h = [&](double t) {
    double sum = 0;
    for (std::size_t k = 0; k < lv.size(); ++k) {
      const double lo = k == 0 ? -1.0 : 0.5 * (double(lv[k - 1]) + lv[k]);
      const double hi = k + 1 == lv.size() ? 1.0 : 0.5 * (double(lv[k]) + lv[k + 1]);
      const double a = t * lv[k];
      sum += F(t * hi, a) - F(t * lo, a);
    }
    return sum;
  };
  const int n = 4000;
  const double T = 9.0, dt = T / n;
  double acc = 0;
  for (int i = 0; i <= n; ++i) {
    const double t = i * dt;
    const double g = 2 * phi(t) * std::pow(2 * normal_cdf(t) - 1, B - 2) * h(t);
    acc += g * (i == 0 || i == n ? 1 : (i % 2 ? 4 : 2));
  }
  return (B - 1) * acc * dt / 3;
}

// One block of 16 quantized without double quantization: checks its absmax and packed bytes,
// returns the dequantized values.
std::vector<float> golden_block(const char* scheme, const std::vector<float>& x, float absmax,
                                const std::vector<std::uint8_t>& packed) {
  const auto q = quantize(x, spec_of(scheme, 16, DoubleQuant::None));
  REQUIRE(q.absmax.size() == 1);
  CHECK(q.absmax[0] == absmax);
  CHECK(std::vector<std::uint8_t>(q.packed_u8(), q.packed_u8() + q.packed.size()) == packed);
  std::vector<float> y(x.size());
  dequantize(q, y);
  return y;
}
}  // namespace

TEST_CASE("packing is MSB-first: high nibble first for 4 bits", "[quant][pack]") {
  // Hand-computed: 4-bit codes A,3,F,0,7 -> 0xA3 0xF0 0x70 (odd count: low nibble of the last byte
  // 0).
  const std::vector<std::uint8_t> c4 = {0xA, 0x3, 0xF, 0x0, 0x7};
  CHECK(pack_codes(c4, 4) == std::vector<std::uint8_t>{0xA3, 0xF0, 0x70});
  // 3-bit codes 5,3,7,1,0,6,2,4 = 101 011 111 001 000 110 010 100 -> 10101111 10010001 10010100.
  const std::vector<std::uint8_t> c3 = {5, 3, 7, 1, 0, 6, 2, 4};
  CHECK(pack_codes(c3, 3) == std::vector<std::uint8_t>{0xAF, 0x91, 0x94});
  // 2-bit codes 3,0,1,2 -> 11 00 01 10 = 0xC6.
  CHECK(pack_codes(std::vector<std::uint8_t>{3, 0, 1, 2}, 2) == std::vector<std::uint8_t>{0xC6});
  for (int bits : {2, 3, 4, 5, 6, 7, 8}) {
    std::vector<std::uint8_t> c(37);
    for (std::size_t i = 0; i < c.size(); ++i)
      c[i] = static_cast<std::uint8_t>((i * 7 + 3) % (1u << bits));
    CHECK(unpack_codes(pack_codes(c, bits), bits, 37) == c);
  }
}

TEST_CASE("NF4 golden example: codes, bytes and dequantized values by hand", "[quant][nf4]") {
  // One block of 16: element i is level i times 2 except two perturbed elements.
  const auto t = nf4_table();
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i)
    x[static_cast<std::size_t>(i)] = 2.0f * t[static_cast<std::size_t>(i)];
  x[7] = 0.1f;   // 0.1/2 = 0.05 > midpoint 0.0397901 -> code 8 (0.0795803)
  x[8] = 0.07f;  // 0.035 < 0.0397901 -> code 7 (0)
  const auto y = golden_block("nf4", x, 2.0f, {0x01, 0x23, 0x45, 0x68, 0x79, 0xAB, 0xCD, 0xEF});
  CHECK(y[7] == 2.0f * t[8]);
  CHECK(y[8] == 0.0f);
  CHECK(y[0] == -2.0f);
  CHECK(y[15] == 2.0f);
  CHECK(y[3] == 2.0f * t[3]);
}

TEST_CASE("FP4 golden example: bitsandbytes' sign-magnitude codes by hand", "[quant][fp4]") {
  // absmax 12, so x/12 is the normalized value: 1 -> 0b0011, -0.5 -> 0b1101, 0.25 -> 0b0111,
  // 0.0625/12 -> 0b0001, -0.0025 (below 0.00260417) -> 0b1000 (-0), 0 -> 0, -0.2 -> 0b1110,
  // 0.75 -> 0b0010; then eight zeros.
  std::vector<float> x = {12.0f, -6.0f, 3.0f, 0.0625f, -0.03f, 0.0f, -2.4f, 9.0f};
  x.resize(16, 0.0f);
  const auto y = golden_block("fp4", x, 12.0f, {0x3D, 0x71, 0x80, 0xE2, 0, 0, 0, 0});
  const std::vector<float> back = {12.0f, -6.0f, 3.0f, 0.0625f, -0.0f, 0.0f, -2.0f, 8.0f};
  for (std::size_t i = 0; i < back.size(); ++i) {
    INFO("element " << i);
    CHECK(y[i] == back[i]);
  }
  CHECK(std::signbit(y[4]));  // -0: the sign bit survives, as in bnb's tree
}

TEST_CASE("partial last block gets its own absmax (bnb rule, no padding)", "[quant][nf4]") {
  std::vector<float> x(100);
  for (int i = 0; i < 100; ++i)
    x[static_cast<std::size_t>(i)] = i < 64 ? 10.0f : 0.5f * ((i % 2) ? 1 : -1);
  const auto q = quantize(x, spec_of("nf4", 64, DoubleQuant::None));
  REQUIRE(q.absmax.size() == 2);
  CHECK(q.absmax[1] == 0.5f);
  CHECK(q.packed.size() == 50);
  std::vector<float> y(100);
  dequantize(q, y);
  for (std::size_t i = 64; i < 100; ++i)
    CHECK(y[i] == x[i]);
}

TEST_CASE("NF4 error on Gaussian data matches the derived expectation", "[quant][nf4]") {
  const int B = 64;
  const std::size_t n = std::size_t{B} * 16384;
  const auto x = test::gaussian(n, 7);
  const auto q = quantize(x, spec_of("nf4", B, DoubleQuant::None));
  std::vector<float> y(n);
  dequantize(q, y);
  const double mse = error_stats(x, y).mse;
  const std::vector<float> lv(nf4_table().begin(), nf4_table().end());
  const double expect = expected_mse(lv, B);
  INFO("NF4 block 64: measured MSE " << mse << ", expected " << expect << " (rel diff "
                                     << (mse / expect - 1) << ")");
  CHECK(std::fabs(mse / expect - 1) < 0.02);
  // Same check for NF2 at block 128 (a very different error level).
  const auto q2 = quantize(x, spec_of("nf2", 128, DoubleQuant::None));
  dequantize(q2, y);
  const double mse2 = error_stats(x, y).mse, expect2 = expected_mse(normal_float_levels(2), 128);
  INFO("NF2 block 128: measured " << mse2 << ", expected " << expect2);
  CHECK(std::fabs(mse2 / expect2 - 1) < 0.02);
  // FP4 at block 64: its sorted levels (bnb's thresholds are these midpoints to ~1e-7).
  const auto q4 = quantize(x, spec_of("fp4", B, DoubleQuant::None));
  dequantize(q4, y);
  std::vector<float> fp4(fp4_table().begin(), fp4_table().end());
  std::sort(fp4.begin(), fp4.end());
  const double mse4 = error_stats(x, y).mse, expect4 = expected_mse(fp4, B);
  INFO("FP4 block 64: measured " << mse4 << ", expected " << expect4);
  CHECK(std::fabs(mse4 / expect4 - 1) < 0.02);
  CHECK(mse4 > mse);  // NF4 is the better 4-bit code for normal data (QLoRA)
}

TEST_CASE("bits per parameter equal the published formulas", "[quant][bits]") {
  CHECK(formula_bits_per_param(spec_of("nf4", 64, DoubleQuant::Bnb)) ==
        Approx(4.126953125).epsilon(1e-15));
  CHECK(std::round(formula_bits_per_param(spec_of("nf4", 64, DoubleQuant::Bnb)) * 1000) / 1000 ==
        4.127);
  CHECK(formula_bits_per_param(spec_of("nf4", 64, DoubleQuant::None)) == 4.5);
  CHECK(formula_bits_per_param(spec_of("nf4", 128, DoubleQuant::None)) == 4.25);
  CHECK(formula_bits_per_param(spec_of("nf4", 128, DoubleQuant::Bnb)) ==
        Approx(4.0 + 8.0 / 128 + 32.0 / 32768));
  auto lq = spec_of("nf3", 64, DoubleQuant::Lq);
  CHECK(formula_bits_per_param(lq) == Approx(3.126953125));
  lq.scheme = Scheme::parse("nf2");
  lq.lq_bits = 2;
  lq.lq_scale_dtype = DType::BF16;
  CHECK(formula_bits_per_param(lq) ==
        Approx(2.0 + 2.0 / 64 + 16.0 / 16384));  // 2.0322 (notes §1.3)
  CHECK(std::round(formula_bits_per_param(lq) * 10000) / 10000 == 2.0322);

  // Stored bits = formula + per-tensor constants (codebook, dynamic map, offset) for whole groups.
  const std::size_t n = 64 * 256 * 4;
  const auto x = test::gaussian(n, 3);
  const auto q = quantize(x, spec_of("nf4", 64, DoubleQuant::Bnb));
  const double constants = 8.0 * (16 * 4 + 256 * 4 + 4);
  CHECK(stored_bits_per_param(q) * n - constants == Approx(4.126953125 * n).epsilon(1e-12));
  const auto ql = quantize(x, lq);
  CHECK(stored_bits_per_param(ql) * n - 8.0 * (4 * 4 + 4) ==
        Approx(formula_bits_per_param(lq) * n).epsilon(1e-12));
}

TEST_CASE("double quantization reconstructs the block scales", "[quant][dq]") {
  const std::size_t n = 64 * 1000 + 40;  // partial last block and partial nested block
  auto x = test::gaussian(n, 11);
  for (std::size_t i = 0; i < n; ++i)
    x[i] *= 1.0f + 0.5f * std::sin(double(i) / 5000.0);
  const auto ref = quantize(x, spec_of("nf4", 64, DoubleQuant::None));
  const auto bnb = quantize(x, spec_of("nf4", 64, DoubleQuant::Bnb));
  REQUIRE(bnb.nested_absmax.size() == 4);  // ceil(1001 / 256)
  REQUIRE(bnb.scale_codes.size() == 1001);
  const auto s = bnb.block_scales();
  double worst = 0;
  for (std::size_t b = 0; b < s.size(); ++b)
    worst = std::max(worst, double(std::fabs(s[b] - ref.absmax[b]) / ref.absmax[b]));
  INFO("bnb DQ worst relative scale error " << worst);
  CHECK(worst < 0.02);
  // bnb chooses weight codes against the true absmax: same codes as without DQ.
  CHECK(bnb.packed == ref.packed);

  auto lqs = spec_of("nf4", 64, DoubleQuant::Lq);
  lqs.lq_scale_dtype = DType::BF16;
  const auto lq = quantize(x, lqs);
  const auto sl = lq.block_scales();
  double worst_lq = 0;
  for (std::size_t b = 0; b < sl.size(); ++b)
    worst_lq = std::max(worst_lq, double(std::fabs(sl[b] - ref.absmax[b]) / ref.absmax[b]));
  INFO("LQ DQ (8-bit, bf16 s1) worst relative scale error " << worst_lq);
  CHECK(worst_lq < 0.02);
  for (float v : lq.nested_absmax)
    CHECK(bf16_to_f32(f32_to_bf16(v)) == v);
  // Errors stay close to the no-DQ error.
  std::vector<float> y0(n), y1(n), y2(n);
  dequantize(ref, y0);
  dequantize(bnb, y1);
  dequantize(lq, y2);
  const double e0 = error_stats(x, y0).rel_fro, e1 = error_stats(x, y1).rel_fro,
               e2 = error_stats(x, y2).rel_fro;
  INFO("rel fro: none " << e0 << " bnb " << e1 << " lq " << e2);
  CHECK(e1 < e0 * 1.05);
  CHECK(e2 < e0 * 1.05);
}

TEST_CASE("bad input is refused", "[quant][errors]") {
  std::vector<float> x(64, 1.0f);
  CHECK_THROWS_AS(quantize(x, spec_of("nf4", 48, DoubleQuant::None)), Error);
  CHECK_THROWS_AS(quantize(x, spec_of("nf4", 8, DoubleQuant::None)), Error);
  x[5] = NAN;
  try {
    quantize(x, spec_of("nf4", 64, DoubleQuant::None));
    FAIL("NaN accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::string(e.what()).find("NaN") != std::string::npos);
  }
  CHECK_THROWS_AS(Scheme::parse("nf9"), Error);
  CHECK_THROWS_AS(Scheme::parse("q4_0"), Error);
}

TEST_CASE("INT schemes: symmetric absmax error bound", "[quant][int]") {
  const auto x = test::gaussian(4096, 5);
  for (int bits : {8, 4}) {
    const auto q = quantize(x, spec_of("int" + std::to_string(bits), 64, DoubleQuant::None));
    std::vector<float> y(x.size());
    dequantize(q, y);
    const float step = 1.0f / static_cast<float>((1 << (bits - 1)) - 1);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::fabs(double(x[i]) - y[i]) / (q.absmax[i / 64] * step));
    INFO("int" << bits << ": worst error " << worst << " steps (bound 0.5)");
    CHECK(worst <= 0.5 + 1e-5);
  }
  const std::int64_t rows = 8, cols = 96;
  const auto xr = test::gaussian(static_cast<std::size_t>(rows * cols), 6);
  const auto r = quantize_rowwise_int8(xr, rows, cols);
  std::vector<float> yr(xr.size());
  dequantize_rowwise_int8(r, cols, yr);
  for (std::size_t i = 0; i < xr.size(); ++i)
    CHECK(std::fabs(xr[i] - yr[i]) <= r.scb[i / cols] / 254 * 1.0001);
}

TEST_CASE("error measured while quantizing equals the error of dequantize()", "[quant][errors]") {
  const auto x = test::gaussian(64 * 300 + 17, 21);
  for (auto dq : {DoubleQuant::None, DoubleQuant::Bnb, DoubleQuant::Lq}) {
    for (const char* scheme : {"nf4", "nf3", "int8", "fp4"}) {
      ErrorStats fused;
      const auto q = quantize(x, spec_of(scheme, 64, dq), &fused);
      std::vector<float> y(x.size());
      dequantize(q, y);
      const auto ref = error_stats(x, y);
      INFO(scheme << " dq " << int(dq) << ": fused " << fused.rel_fro << " vs " << ref.rel_fro);
      // The fused pass sums each block in float (LaneSums), and rounds x - y·s to float.
      CHECK(fused.rel_fro == Approx(ref.rel_fro).epsilon(1e-6));
      CHECK(fused.max_abs == Approx(ref.max_abs).epsilon(1.2e-7));
    }
  }
}

TEST_CASE("quantize_bf16 equals quantize of the widened values, bit for bit", "[quant][bf16]") {
  // Rounded to bf16 first, so the float path sees exactly the values the bf16 path decodes.
  auto x = test::gaussian(64 * 300 + 17, 33);
  std::vector<std::byte> raw(1 + 2 * x.size());  // +1: start at an odd address (unaligned)
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint16_t h = f32_to_bf16(x[i]);
    x[i] = bf16_to_f32(h);
    std::memcpy(raw.data() + 1 + 2 * i, &h, 2);
  }
  const std::span<const std::byte> bytes(raw.data() + 1, 2 * x.size());
  for (auto dq : {DoubleQuant::None, DoubleQuant::Bnb, DoubleQuant::Lq}) {
    for (const char* scheme : {"nf4", "nf3", "int8", "fp4"}) {
      for (int block : {16, 64, 4096}) {
        INFO(scheme << " dq " << int(dq) << " block " << block);
        ErrorStats ef, eb;
        const auto qf = quantize(x, spec_of(scheme, block, dq), &ef);
        const auto qb = quantize_bf16(bytes, spec_of(scheme, block, dq), &eb);
        CHECK(qb.packed == qf.packed);
        CHECK(qb.absmax == qf.absmax);
        CHECK(qb.scale_codes == qf.scale_codes);
        CHECK(qb.nested_absmax == qf.nested_absmax);
        CHECK(qb.offset == qf.offset);
        CHECK(eb.rel_fro == ef.rel_fro);
        CHECK(eb.max_abs == ef.max_abs);
      }
    }
  }
}

TEST_CASE("quantize_bf16 names the first non-finite element", "[quant][bf16]") {
  std::vector<std::byte> raw(2 * 5000);
  const auto put = [&](std::size_t i, std::uint16_t h) { std::memcpy(raw.data() + 2 * i, &h, 2); };
  for (std::size_t i = 0; i < 5000; ++i)
    put(i, f32_to_bf16(0.01f * static_cast<float>(i % 7)));
  put(4500, 0xFF80);  // -Inf
  put(4700, 0x7FC0);  // NaN
  CHECK_THROWS_WITH(quantize_bf16(raw, spec_of("nf4", 64, DoubleQuant::Bnb)),
                    Catch::Contains("element 4500 is infinite"));
  put(4500, 0);
  CHECK_THROWS_WITH(quantize_bf16(raw, spec_of("nf4", 64, DoubleQuant::Bnb)),
                    Catch::Contains("element 4700 is NaN"));
}
