// Codebooks against published values: bitsandbytes' NF4 table, the NF3/NF2 values of
// ../shared/research/quant-anchors.md §2.2, the normal quantile function, the dynamic map rule.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "ckptkit/quant/codebook.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"

using namespace ckpt;
using namespace ckpt::quant;

namespace {
std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
}  // namespace

TEST_CASE("NF4 table equals bitsandbytes' floats bit for bit", "[quant][codebook]") {
  // Decimal strings as printed in bitsandbytes/functional.py get_4bit_type("nf4"), parsed
  // independently here (strtof rounds to nearest, as torch.tensor does from Python floats).
  const char* published[16] = {"-1.0",
                               "-0.6961928009986877",
                               "-0.5250730514526367",
                               "-0.39491748809814453",
                               "-0.28444138169288635",
                               "-0.18477343022823334",
                               "-0.09105003625154495",
                               "0.0",
                               "0.07958029955625534",
                               "0.16093020141124725",
                               "0.24611230194568634",
                               "0.33791524171829224",
                               "0.44070982933044434",
                               "0.5626170039176941",
                               "0.7229568362236023",
                               "1.0"};
  const auto t = nf4_table();
  for (int i = 0; i < 16; ++i) {
    INFO("code " << i << ": ours " << t[static_cast<std::size_t>(i)] << " published "
                 << published[i]);
    CHECK(bits_of(t[static_cast<std::size_t>(i)]) == bits_of(std::strtof(published[i], nullptr)));
  }
}

TEST_CASE("normal quantile function is accurate", "[quant][codebook]") {
  // Reference values of the standard normal quantile (Abramowitz & Stegun tables / R qnorm).
  CHECK(std::fabs(normal_ppf(0.975) - 1.959963984540054) < 1e-13);
  CHECK(std::fabs(normal_ppf(0.5)) < 1e-15);
  CHECK(std::fabs(normal_ppf(0.999) - 3.090232306167814) < 1e-12);
  CHECK(std::fabs(normal_ppf(1e-10) + 6.361340902404056) < 1e-10);
  double worst = 0;
  // Above x = 5, p = Phi(x) is within 3e-7 of 1 and its double rounding alone moves x by >1e-9.
  for (double x = -8; x <= 5; x += 0.01) {
    const double p = normal_cdf(x);
    if (p <= 0 || p >= 1) continue;
    // Relative error in p space is what matters for quantiles; compare x where p is well resolved.
    if (p > 1e-300 && p < 1 - 1e-15)
      worst = std::max(worst, std::fabs(normal_ppf(p) - x) / std::max(1.0, std::fabs(x)));
  }
  INFO("worst relative round-trip error " << worst);
  CHECK(worst < 1e-9);
  CHECK(std::fabs(normal_ppf(kNfOffset) - 1.848) < 1e-3);  // anchors §2.2: ~1.848
}

TEST_CASE("NF4 built by the quantile rule reproduces the table", "[quant][codebook]") {
  const auto built = normal_float_levels(4);
  const auto f64 = normal_float_levels_f64(4);
  REQUIRE(built.size() == 16);
  const auto t = nf4_table();
  double worst32 = 0, worst64 = 0;
  int exact = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    worst32 = std::max(worst32, std::fabs(double(built[i]) - t[i]));
    worst64 = std::max(worst64, std::fabs(f64[i] - t[i]));
    exact += bits_of(built[i]) == bits_of(t[i]);
  }
  INFO("float32-emulated construction: max diff " << worst32 << ", " << exact
                                                  << "/16 bit-exact; f64: " << worst64);
  CHECK(exact == 16);  // the float32 emulation of torch.linspace reproduces the table exactly
  CHECK(worst64 <= 2e-7);
}

TEST_CASE("NF3 and NF2 match the values of the notes", "[quant][codebook]") {
  // ../shared/research/quant-anchors.md §2.2 (7 significant digits).
  const double nf3[] = {-1, -0.4786292, -0.2171418, 0, 0.1609302, 0.3379152, 0.562617, 1};
  const double nf2[] = {-1, 0, 0.3379152, 1};
  const auto b3 = normal_float_levels(3);
  const auto b2 = normal_float_levels(2);
  REQUIRE(b3.size() == 8);
  REQUIRE(b2.size() == 4);
  for (std::size_t i = 0; i < 8; ++i) {
    INFO("nf3[" << i << "] = " << b3[i]);
    CHECK(std::fabs(b3[i] - nf3[i]) < 1e-6);
  }
  for (std::size_t i = 0; i < 4; ++i) {
    INFO("nf2[" << i << "] = " << b2[i]);
    CHECK(std::fabs(b2[i] - nf2[i]) < 1e-6);
  }
  // Positive NF3 levels are a subset of the NF4 ones (notes §2.2).
  const auto t = nf4_table();
  CHECK(std::fabs(b3[4] - t[9]) < 1e-6);
  CHECK(std::fabs(b3[5] - t[11]) < 1e-6);
  CHECK(std::fabs(b3[6] - t[13]) < 1e-6);
}

TEST_CASE("dynamic map follows create_dynamic_map's rule", "[quant][codebook]") {
  const auto m = dynamic_map();
  REQUIRE(m.size() == 256);
  for (std::size_t i = 0; i + 1 < m.size(); ++i)
    CHECK(m[i] <= m[i + 1]);
  CHECK(m.back() == 1.0f);
  // 127 negative values mirroring the 127 positive ones below 1.0, one zero.
  int neg = 0, zero = 0;
  for (float v : m)
    neg += v < 0, zero += v == 0;
  CHECK(neg == 127);
  CHECK(zero == 1);
  for (int i = 0; i < 127; ++i)
    CHECK(m[static_cast<std::size_t>(i)] == -m[static_cast<std::size_t>(254 - i)]);
  // Extremes by hand: exponent 10^-6 with one fraction bin -> 0.55e-6; exponent 10^0 with 64
  // bins -> the last bin mean 1 - 0.9/128 = 0.99296875.
  CHECK(std::fabs(m[128] - 0.55e-6f) < 1e-12);
  CHECK(std::fabs(m[0] + 0.99296875f) < 1e-6);
  // torch.linspace's values on AVX2/AVX-512 CPUs, where it rounds start + step·i once: entries a
  // separate multiply and add (an x86-64 build's contraction-free code) put 1-2 ulp lower.
  CHECK(std::count(m.begin(), m.end(), 0.47265625f) == 1);
  CHECK(std::count(m.begin(), m.end(), std::bit_cast<float>(0x3f03cccdu)) == 1);
  CHECK(std::count(m.begin(), m.end(), std::bit_cast<float>(0x3a016f01u)) == 1);
  // Decade i holds 2^i values: count the positives in [0.1, 1).
  int top = 0;
  for (float v : m)
    top += v >= 0.1f && v < 1.0f;
  CHECK(top == 64);
}

TEST_CASE("codebook encoding is the nearest level by midpoints", "[quant][codebook]") {
  const Codebook cb(std::vector<float>(nf4_table().begin(), nf4_table().end()));
  CHECK(cb.zero_code() == 7);
  for (std::size_t i = 0; i < 16; ++i)
    CHECK(cb.encode(nf4_table()[i]) == i);
  CHECK(cb.encode(0.0397f) == 7);  // midpoint 0 / 0.0795803 is 0.0397901
  CHECK(cb.encode(0.0399f) == 8);
  CHECK(cb.encode(-5.0f) == 0);  // clipping
  CHECK(cb.encode(5.0f) == 15);
  const auto il = int_levels(4);
  REQUIRE(il.size() == 15);
  CHECK(il.front() == -1.0f);
  CHECK(il[7] == 0.0f);
  CHECK(std::fabs(il[8] - 1.0f / 7) < 1e-7);
}

TEST_CASE("encode and encode_many count the midpoints below x (std::lower_bound), any size",
          "[quant][codebook]") {
  // The branch-free search must agree with std::lower_bound everywhere, also exactly on a
  // midpoint (ties go to the lower level), beyond both ends and for 1..256 levels (17 and 33:
  // midpoint counts that fill whole runs of 16). NaN gets code 0 like std::lower_bound's.
  const float inf = std::numeric_limits<float>::infinity();
  std::uint32_t state = 12345;
  const auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.0f * 2.4f - 1.2f;
  };
  for (std::size_t size : {1u, 2u, 3u, 4u, 7u, 8u, 15u, 16u, 17u, 33u, 100u, 255u, 256u}) {
    std::vector<float> levels(size);
    for (std::size_t i = 0; i < size; ++i)
      levels[i] = size == 1 ? 0.0f : -1.0f + 2.0f * static_cast<float>(i) / float(size - 1);
    const Codebook cb(levels);
    const auto& m = cb.midpoints();
    std::vector<float> probes(m.begin(), m.end());
    for (const float special : {inf, -inf, -0.0f, 1.0f, -1.0f, std::nanf("")})
      probes.push_back(special);
    for (int k = 0; k < 2000; ++k)
      probes.push_back(next());
    std::vector<std::uint8_t> batch(probes.size());
    cb.encode_many(probes.data(), probes.size(), batch.data());
    int bad = 0, bad_batch = 0;
    for (std::size_t i = 0; i < probes.size(); ++i) {
      const auto want = std::lower_bound(m.begin(), m.end(), probes[i]) - m.begin();
      bad += cb.encode(probes[i]) != want;
      bad_batch += batch[i] != want;
    }
    INFO(size << " levels: " << bad << " (encode), " << bad_batch << " (encode_many) of "
              << probes.size() << " probes differ");
    CHECK(bad == 0);
    CHECK(bad_batch == 0);

    // The scalar search and every SIMD path this CPU runs, on the
    // tables the header specifies.
    const std::size_t runs = (m.size() + 15) / 16;
    std::vector<float> padded(16 * (runs + 1), inf);
    std::copy(m.begin(), m.end(), padded.begin());
    std::vector<float> run_last(16, inf);
    for (std::size_t k = 0; k < runs; ++k)
      run_last[k] = padded[16 * k + 15];
    std::vector<std::uint8_t> portable(probes.size());
    count_midpoints_below(run_last.data(), padded.data(), probes.data(), probes.size(),
                          portable.data(), SimdPath::Scalar);
    CHECK(portable == batch);
    for (SimdPath path : available_simd_paths()) {
      std::vector<std::uint8_t> fast(probes.size(), 0xEE);
      count_midpoints_below(run_last.data(), padded.data(), probes.data(), probes.size(),
                            fast.data(), path);
      INFO("path " << simd_path_name(path));
      CHECK(fast == portable);
    }
  }
}

namespace {
// bitsandbytes' dQuantizeFP4 (csrc/kernels.cu) as written there: a branch tree on |x|.
std::uint8_t fp4_tree(float x) {
  const int sign = x < 0 ? 0b1000 : 0b0000;
  x = std::fabs(x);
  if (x > 0.29166667f) {
    if (x > 0.583333f) return static_cast<std::uint8_t>((x > 0.8333333f ? 0b0011 : 0b0010) + sign);
    return static_cast<std::uint8_t>((x > 0.4166667f ? 0b101 : 0b100) + sign);
  }
  if (x > 0.0859375f) return static_cast<std::uint8_t>((x > 0.20833333f ? 0b0111 : 0b0110) + sign);
  return static_cast<std::uint8_t>((x > 0.00260417f ? 0b0001 : 0b0000) + sign);
}
}  // namespace

TEST_CASE("FP4 table equals bitsandbytes' dequantization constants", "[quant][codebook][fp4]") {
  // dDequantizeFP4Tree's literals for the magnitude bits 000..111, sign from bit 3.
  const char* magnitude[8] = {"0.0", "5.208333333e-03", "0.66666667", "1.0", "0.33333333",
                              "0.5", "0.16666667",      "0.25"};
  const auto t = fp4_table();
  for (int code = 0; code < 16; ++code) {
    const float m = std::strtof(magnitude[code & 7], nullptr);
    const float want = (code & 8) ? -m : m;
    INFO("code " << code << ": ours " << t[static_cast<std::size_t>(code)] << " want " << want);
    CHECK(bits_of(t[static_cast<std::size_t>(code)]) == bits_of(want));
  }
}

TEST_CASE("FP4 encoding equals bitsandbytes' quantization tree", "[quant][codebook][fp4]") {
  // Every threshold and its float neighbours, signed zeros, and a sweep of [-1.01, 1.01].
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, -1.5f};
  for (float t :
       {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f}) {
    for (float s : {1.0f, -1.0f}) {
      v.push_back(s * t);
      v.push_back(s * std::nextafter(t, 0.0f));
      v.push_back(s * std::nextafter(t, 1.0f));
    }
  }
  for (int i = -101000; i <= 101000; ++i)
    v.push_back(static_cast<float>(i) * 1e-5f);
  std::vector<std::uint8_t> codes(v.size());
  std::vector<float> levels(v.size());
  encode_fp4(v.data(), v.size(), 1.0f, codes.data(), levels.data());
  std::size_t same = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    same += codes[i] == fp4_tree(v[i]) ? 1 : 0;
    CHECK(bits_of(levels[i]) == bits_of(fp4_table()[codes[i]]));
  }
  CHECK(same == v.size());
  // Every SIMD path: the same codes and level bits, NaN and infinities included (both give the
  // tree's answer for comparisons that are all false, and x < 0 for the sign), at odd lengths.
  v.push_back(std::numeric_limits<float>::quiet_NaN());
  v.push_back(-std::numeric_limits<float>::quiet_NaN());
  v.push_back(std::numeric_limits<float>::infinity());
  v.push_back(-std::numeric_limits<float>::infinity());
  for (float inv : {1.0f, 0.37f, 0.0f}) {
    std::vector<std::uint8_t> ref_codes(v.size());
    std::vector<float> ref_levels(v.size());
    encode_fp4(v.data(), v.size(), inv, ref_codes.data(), ref_levels.data(), SimdPath::Scalar);
    for (SimdPath path : available_simd_paths()) {
      INFO("path " << simd_path_name(path) << ", inv " << inv);
      std::vector<std::uint8_t> c(v.size());
      std::vector<float> l(v.size());
      encode_fp4(v.data(), v.size(), inv, c.data(), l.data(), path);
      CHECK(c == ref_codes);
      CHECK(std::memcmp(l.data(), ref_levels.data(), 4 * l.size()) == 0);
      encode_fp4(v.data() + 1, v.size() - 1, inv, c.data(), nullptr, path);  // codes only
      CHECK(std::equal(c.begin(), c.end() - 1, ref_codes.begin() + 1));
    }
  }
  // The scale is applied as x * inv, as the kernel multiplies by 1/absmax.
  const float x = 3.0f, inv = 1.0f / 12.0f;
  std::uint8_t c;
  encode_fp4(&x, 1, inv, &c, nullptr);
  CHECK(c == fp4_tree(x * inv));
}
