// The fused 4-bit kernel: the AVX-512 version gives the portable version's bytes and error sums
// exactly, and both give Codebook::encode's codes.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

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
    CHECK(fast.packed == ref.packed);
    CHECK(std::memcmp(fast.sums.se, ref.sums.se, sizeof ref.sums.se) == 0);
    CHECK(std::memcmp(fast.sums.sx, ref.sums.sx, sizeof ref.sums.sx) == 0);
    CHECK(fast.sums.max_abs == ref.sums.max_abs);
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
    CHECK(ref.sums.sum_se() == Approx(se).epsilon(1e-12));
  }
}
