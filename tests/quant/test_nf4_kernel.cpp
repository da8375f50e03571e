// The fused 4-bit kernels (float32 and bf16 input), the bf16 block absmax and the midpoint
// search: every SIMD path this CPU runs (AVX2, AVX-512, NEON) gives the scalar path's bytes and
// sums exactly, and that gives Codebook::encode's codes and the errors of the dequantized values.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/quant/codebook.hpp"
#include "ckptkit/quant/nf4_kernel.hpp"
#include "ckptkit/quant/simd_kernels.hpp"

using namespace ckpt;
using namespace ckpt::quant;

namespace {
struct Run {
  std::vector<std::uint8_t> packed;
  LaneSums sums;
};

// Values with exact midpoint hits (x = mid * scale lands on the midpoint after x * (1/scale) for
// scale a power of two), subnormals, signed zeros and the largest floats.
std::vector<float> sample(std::size_t n, const Codebook& cb, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  const float special[] = {std::numeric_limits<float>::denorm_min(),
                           -std::numeric_limits<float>::denorm_min(),
                           -3 * std::numeric_limits<float>::denorm_min(),
                           std::numeric_limits<float>::min() / 2,
                           0.0f,
                           -0.0f,
                           std::numeric_limits<float>::max(),
                           -std::numeric_limits<float>::max()};
  for (std::size_t i = 0; i < n; ++i)
    x[i] = i % 5 == 0   ? 4.0f * cb.midpoints()[i % cb.midpoints().size()]
           : i % 7 == 3 ? special[(i / 7) % 8]
                        : g(rng);
  return x;
}

// The vector paths this CPU runs (the scalar one is the reference they are compared with).
std::vector<SimdPath> vector_paths() {
  std::vector<SimdPath> out;
  for (SimdPath p : available_simd_paths())
    if (p != SimdPath::Scalar) out.push_back(p);
  if (out.empty()) WARN("no SIMD path on this CPU: only the scalar kernels run");
  return out;
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
// absmax(n, block, out, path) per block of x: every vector path gives the scalar path's bits, and
// the scalar result is the float max |x| of the block (NaN where the block holds a NaN).
template <class Absmax>
void check_block_absmax(const std::vector<float>& x, std::initializer_list<std::int64_t> blocks,
                        Absmax absmax) {
  const auto n = static_cast<std::int64_t>(x.size());
  for (std::int64_t block : blocks) {
    const auto nb = static_cast<std::size_t>((n + block - 1) / block);
    std::vector<float> ref(nb);
    absmax(n, block, ref.data(), SimdPath::Scalar);
    INFO("block " << block);
    for (SimdPath path : vector_paths()) {
      std::vector<float> fast(nb, -1.0f);
      absmax(n, block, fast.data(), path);
      INFO("path " << simd_path_name(path));
      CHECK(std::memcmp(fast.data(), ref.data(), nb * sizeof(float)) == 0);
    }
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

}  // namespace

TEST_CASE("NF4 kernel: every SIMD path equals the scalar one, bytes and sums",
          "[quant][nf4][kernel]") {
  const Codebook cb(std::vector<float>(nf4_table().begin(), nf4_table().end()));
  const Book16 book(cb.levels(), cb.midpoints());
  const auto paths = vector_paths();
  for (std::size_t n : {1, 15, 16, 17, 33, 64, 1000, 4096}) {
    auto x = sample(n, cb, static_cast<unsigned>(n));
    for (auto& v : x)  // the error sums of ±max would overflow: keep the kernel's domain
      if (std::fabs(v) > 1e15f) v = std::copysign(1e15f, v);
    const float scale = 4.0f, inv = 1.0f / scale, s = 4.0f;
    const auto m = static_cast<std::int64_t>(n);
    Run ref{std::vector<std::uint8_t>((n + 1) / 2, 0x55), {}};
    encode_pack_nf4(book, x.data(), m, inv, s, ref.packed.data(), &ref.sums, SimdPath::Scalar);
    for (SimdPath path : paths) {
      Run fast{std::vector<std::uint8_t>((n + 1) / 2, 0xAA), {}};
      Run codes_only{std::vector<std::uint8_t>((n + 1) / 2, 0x33), {}};
      encode_pack_nf4(book, x.data(), m, inv, s, fast.packed.data(), &fast.sums, path);
      encode_pack_nf4(book, x.data(), m, inv, s, codes_only.packed.data(), nullptr, path);
      INFO("n = " << n << ", path " << simd_path_name(path));
      check_same(fast, ref);
      CHECK(codes_only.packed == ref.packed);
    }
    INFO("n = " << n);
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
  const auto paths = vector_paths();
  for (std::size_t n : {1, 15, 16, 17, 33, 64, 1000, 4096}) {
    auto x = sample(n, cb, static_cast<unsigned>(n) + 7);
    for (auto& v : x)
      if (std::fabs(v) > 1e15f) v = std::copysign(1e15f, v);
    const auto raw = bf16_bytes(x);  // x now holds the bf16 values as float
    const float scale = 4.0f, inv = 1.0f / scale, s = 3.0f;
    const auto m = static_cast<std::int64_t>(n);
    Run f32{std::vector<std::uint8_t>((n + 1) / 2, 0xAA), {}};
    Run ref{std::vector<std::uint8_t>((n + 1) / 2, 0x55), {}};
    encode_pack_nf4(book, x.data(), m, inv, s, f32.packed.data(), &f32.sums, SimdPath::Scalar);
    encode_pack_nf4_bf16(book, raw.data() + 1, m, inv, s, ref.packed.data(), &ref.sums,
                         SimdPath::Scalar);
    INFO("n = " << n);
    check_same(ref, f32);
    for (SimdPath path : paths) {
      Run fast{std::vector<std::uint8_t>((n + 1) / 2, 0x11), {}};
      encode_pack_nf4_bf16(book, raw.data() + 1, m, inv, s, fast.packed.data(), &fast.sums, path);
      INFO("path " << simd_path_name(path));
      check_same(fast, ref);
    }
  }
}

TEST_CASE("f32 block absmax: every path equals the scalar bits and the float max, Inf/NaN kept",
          "[quant][kernel]") {
  auto x =
      sample(4096 + 37, Codebook(std::vector<float>(nf4_table().begin(), nf4_table().end())), 5);
  x[3] = -0.0f;
  x[100] = -1e30f;
  x[200] = 1e-42f;                                    // subnormal
  x[700] = -std::numeric_limits<float>::infinity();   // block 10 of 64
  x[1500] = std::numeric_limits<float>::quiet_NaN();  // block 23 of 64
  // Any block length: 37 is what row-wise INT8 or a double-quant group may pass.
  check_block_absmax(x, {16, 37, 64, 256, 4096},
                     [&](std::int64_t n, std::int64_t block, float* out, SimdPath path) {
                       f32_block_absmax(x.data(), n, block, out, path);
                     });
}

TEST_CASE("dequantize16: every path equals level times scale, odd lengths", "[quant][kernel]") {
  const auto lv = nf4_table();
  std::vector<std::uint8_t> packed(600);
  for (std::size_t i = 0; i < packed.size(); ++i)
    packed[i] = static_cast<std::uint8_t>(i * 97 + 13);
  for (std::int64_t n : {1, 15, 16, 33, 64, 1199, 1200}) {
    for (float s : {0.0f, 0.173f, -3.5f, 1e-40f}) {
      std::vector<float> ref(static_cast<std::size_t>(n));
      dequantize16(packed.data(), n, s, lv.data(), ref.data(), SimdPath::Scalar);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint8_t byte = packed[static_cast<std::size_t>(i / 2)];
        const int code = i % 2 == 0 ? byte >> 4 : byte & 0x0F;
        CHECK(ref[static_cast<std::size_t>(i)] == lv[static_cast<std::size_t>(code)] * s);
      }
      for (SimdPath path : vector_paths()) {
        INFO("n " << n << ", s " << s << ", path " << simd_path_name(path));
        std::vector<float> out(static_cast<std::size_t>(n), -7.0f);
        dequantize16(packed.data(), n, s, lv.data(), out.data(), path);
        CHECK(std::memcmp(out.data(), ref.data(), 4 * out.size()) == 0);
      }
    }
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
  check_block_absmax(x, {16, 64, 256, 4096},
                     [&](std::int64_t n, std::int64_t block, float* out, SimdPath path) {
                       bf16_block_absmax(raw.data() + 1, n, block, out, path);  // unaligned
                     });
}

TEST_CASE("SIMD paths: every one this CPU runs is compiled in, the best is the default",
          "[quant][simd]") {
  const auto avail = available_simd_paths();
  const auto has = [&](SimdPath p) {
    return std::find(avail.begin(), avail.end(), p) != avail.end();
  };
  INFO(simd_summary());
  CHECK(avail.front() == SimdPath::Scalar);
  for (SimdPath p : vector_paths())  // a path the CPU has runs its own kernels, not the scalar code
    CHECK(simd::kernels_for(p) != nullptr);
#if defined(__aarch64__)
  CHECK(has(SimdPath::Neon));
#elif defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) CHECK(has(SimdPath::Avx2));
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    CHECK(has(SimdPath::Avx512));
#endif
  if (!std::getenv("CKPTKIT_SIMD")) CHECK(active_simd_path() == avail.back());
}

TEST_CASE("NF4 kernel over runs of blocks equals one call per block, on every path",
          "[quant][nf4][kernel]") {
  const Codebook cb(std::vector<float>(nf4_table().begin(), nf4_table().end()));
  const Book16 book(cb.levels(), cb.midpoints());
  for (std::int64_t block : {16, 64, 256}) {
    for (std::int64_t n : {block, 5 * block, 5 * block + 17, 3 * block + 1}) {
      auto x = sample(static_cast<std::size_t>(n), cb, static_cast<unsigned>(n + block));
      for (auto& v : x)
        if (std::fabs(v) > 1e15f) v = std::copysign(1e15f, v);
      const auto raw = bf16_bytes(x);
      const std::int64_t nb = (n + block - 1) / block;
      std::vector<float> inv(static_cast<std::size_t>(nb)), s(inv.size());
      for (std::size_t b = 0; b < inv.size(); ++b) {
        inv[b] = 1.0f / (0.5f + 0.37f * static_cast<float>(b));
        s[b] = 0.5f + 0.41f * static_cast<float>(b);
      }
      // The reference: one scalar call per block, folded in block order.
      Run ref{std::vector<std::uint8_t>(static_cast<std::size_t>((n + 1) / 2), 0x55), {}};
      for (std::int64_t b = 0; b < nb; ++b)
        encode_pack_nf4(book, x.data() + b * block, std::min(block, n - b * block),
                        inv[static_cast<std::size_t>(b)], s[static_cast<std::size_t>(b)],
                        ref.packed.data() + b * block / 2, &ref.sums, SimdPath::Scalar);
      for (SimdPath path : available_simd_paths()) {
        INFO("block " << block << ", n " << n << ", path " << simd_path_name(path));
        Run f32{std::vector<std::uint8_t>(ref.packed.size(), 0xAA), {}};
        Run bf16{std::vector<std::uint8_t>(ref.packed.size(), 0x11), {}};
        std::vector<std::uint8_t> codes_only(ref.packed.size(), 0x22);
        encode_pack_nf4_blocks(book, x.data(), n, block, inv.data(), s.data(), f32.packed.data(),
                               &f32.sums, path);
        encode_pack_nf4_blocks_bf16(book, raw.data() + 1, n, block, inv.data(), s.data(),
                                    bf16.packed.data(), &bf16.sums, path);
        encode_pack_nf4_blocks(book, x.data(), n, block, inv.data(), nullptr, codes_only.data(),
                               nullptr, path);
        check_same(f32, ref);
        check_same(bf16, ref);
        CHECK(codes_only == ref.packed);
      }
    }
  }
}
