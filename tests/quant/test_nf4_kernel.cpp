// The fused 4-bit kernels (float32 and bf16 input) and the bf16 block absmax: the AVX-512/AVX2
// versions give the portable versions' bytes and sums exactly, and those give Codebook::encode's
// codes and the errors of the dequantized values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/quant/codebook.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"

using namespace ckpt::quant;

namespace {
struct Run {
  std::vector<std::uint8_t> packed;
  LaneSums sums;
};

// Values with exact midpoint hits: x = mid * scale lands on the midpoint after x * (1/scale)
// for scale a power of two.
std::vector<float> sample(std::size_t n, const Codebook& cb, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = i % 5 == 0 ? 4.0f * cb.midpoints()[i % cb.midpoints().size()] : g(rng);
  return x;
}

// x rounded to bf16, as raw bytes starting one byte into the buffer (an odd address).
std::vector<std::byte> bf16_bytes(std::vector<float>& x) {
  std::vector<std::byte> raw(1 + 2 * x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint16_t h = ckpt::f32_to_bf16(x[i]);
    x[i] = ckpt::bf16_to_f32(h);
    std::memcpy(raw.data() + 1 + 2 * i, &h, 2);
  }
  return raw;
}

void check_same(const Run& a, const Run& b) {
  CHECK(a.packed == b.packed);
  CHECK(std::memcmp(a.sums.se, b.sums.se, sizeof b.sums.se) == 0);
  CHECK(std::memcmp(a.sums.sx, b.sums.sx, sizeof b.sums.sx) == 0);
  CHECK(a.sums.max_abs == b.sums.max_abs);
}
}  // namespace

TEST_CASE("NF4 kernel: AVX-512 equals portable, bytes and sums", "[quant][nf4][kernel]") {
  const Codebook cb(std::vector<float>(nf4_table().begin(), nf4_table().end()));
  const Book16 book(cb.levels(), cb.midpoints());
  if (!nf4_kernel_is_avx512()) WARN("no AVX-512 on this CPU: only the portable kernel is run");
  for (std::size_t n : {1, 15, 16, 17, 33, 64, 1000, 4096}) {
    const auto x = sample(n, cb, static_cast<unsigned>(n));
    const float scale = 4.0f, inv = 1.0f / scale, s = 4.0f;
    Run fast{std::vector<std::uint8_t>((n + 1) / 2, 0xAA), {}};
    Run ref{std::vector<std::uint8_t>((n + 1) / 2, 0x55), {}};
    encode_pack_nf4(book, x.data(), static_cast<std::int64_t>(n), inv, s, fast.packed.data(),
                    &fast.sums);
    encode_pack_nf4_portable(book, x.data(), static_cast<std::int64_t>(n), inv, s,
                             ref.packed.data(), &ref.sums);
    INFO("n = " << n);
    check_same(fast, ref);
    // Codes are the codebook's nearest level (midpoint rule), high nibble first.
    std::size_t same = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t byte = ref.packed[i / 2];
      const std::uint8_t code = (i % 2 == 0) ? byte >> 4 : byte & 0x0F;
      same += code == cb.encode(x[i] * inv) ? 1 : 0;
    }
    CHECK(same == n);
    if (n % 2 == 1) CHECK((ref.packed.back() & 0x0F) == 0);
    // And the sums are those of the dequantized values.
    double se = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double e = double(x[i]) - double(cb.levels()[cb.encode(x[i] * inv)] * s);
      se += e * e;
    }
    CHECK(ref.sums.sum_se() == Approx(se).epsilon(1e-6));  // float sums per call
  }
}

TEST_CASE("NF4 kernel on bf16 bytes equals the float kernel on the widened values",
          "[quant][nf4][kernel][bf16]") {
  const Codebook cb(std::vector<float>(nf4_table().begin(), nf4_table().end()));
  const Book16 book(cb.levels(), cb.midpoints());
  for (std::size_t n : {1, 15, 16, 17, 33, 64, 1000, 4096}) {
    auto x = sample(n, cb, static_cast<unsigned>(n) + 7);
    const auto raw = bf16_bytes(x);  // x now holds the bf16 values as float
    const float scale = 4.0f, inv = 1.0f / scale, s = 3.0f;
    const auto m = static_cast<std::int64_t>(n);
    Run f32{std::vector<std::uint8_t>((n + 1) / 2, 0xAA), {}};
    Run fast{std::vector<std::uint8_t>((n + 1) / 2, 0x11), {}};
    Run ref{std::vector<std::uint8_t>((n + 1) / 2, 0x55), {}};
    encode_pack_nf4_portable(book, x.data(), m, inv, s, f32.packed.data(), &f32.sums);
    encode_pack_nf4_bf16(book, raw.data() + 1, m, inv, s, fast.packed.data(), &fast.sums);
    encode_pack_nf4_bf16_portable(book, raw.data() + 1, m, inv, s, ref.packed.data(), &ref.sums);
    INFO("n = " << n);
    check_same(fast, ref);
    check_same(ref, f32);
  }
}

TEST_CASE("bf16 block absmax: vector equals portable equals the float max, Inf/NaN kept",
          "[quant][kernel][bf16]") {
  auto x =
      sample(4096 + 40, Codebook(std::vector<float>(nf4_table().begin(), nf4_table().end())), 3);
  x[100] = -1e30f;                                     // a large negative magnitude
  x[700] = std::numeric_limits<float>::infinity();     // block 10 of 64
  x[1500] = -std::numeric_limits<float>::quiet_NaN();  // block 23 of 64
  const auto raw = bf16_bytes(x);
  const auto n = static_cast<std::int64_t>(x.size());
  for (std::int64_t block : {16, 64, 256, 4096}) {
    const auto nb = static_cast<std::size_t>((n + block - 1) / block);
    std::vector<float> fast(nb), ref(nb);
    bf16_block_absmax(raw.data() + 1, n, block, fast.data());
    bf16_block_absmax_portable(raw.data() + 1, n, block, ref.data());
    INFO("block " << block);
    CHECK(std::memcmp(fast.data(), ref.data(), nb * sizeof(float)) == 0);
    for (std::size_t b = 0; b < nb; ++b) {
      float m = 0;
      bool nan = false;
      for (std::int64_t i = static_cast<std::int64_t>(b) * block;
           i < std::min(n, static_cast<std::int64_t>(b + 1) * block); ++i) {
        nan = nan || std::isnan(x[static_cast<std::size_t>(i)]);
        m = std::max(m, std::fabs(x[static_cast<std::size_t>(i)]));
      }
      if (nan)
        CHECK(std::isnan(ref[b]));
      else
        CHECK(ref[b] == m);
    }
  }
}
