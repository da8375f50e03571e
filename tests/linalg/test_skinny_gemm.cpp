// The skinny products against a double-precision reference, and every SIMD path against the
// scalar one byte for byte (the kernels' fixed FMA order).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "ckptkit/linalg/skinny_gemm.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

struct Case {
  std::int64_t rows, inner, l, lda;
};

// Padding columns of b stay zero, as the callers keep them.
std::vector<float> skinny(std::int64_t rows, std::int64_t l, std::uint64_t seed) {
  const std::int64_t ld = skinny_stride(l);
  const auto g = test::gaussian(static_cast<std::size_t>(rows * l), seed, 1.0f);
  std::vector<float> s(static_cast<std::size_t>(rows * ld), 0.0f);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t c = 0; c < l; ++c)
      s[static_cast<std::size_t>(i * ld + c)] = g[static_cast<std::size_t>(i * l + c)];
  return s;
}

// Shapes that hit every block edge: rows and columns not multiples of any register block, l
// from one lane to several chunks, inner 0, a row stride longer than the row.
const Case kCases[] = {{1, 1, 1, 1},       {7, 13, 5, 13},   {9, 33, 17, 40}, {25, 64, 26, 64},
                       {17, 100, 33, 101}, {40, 31, 74, 31}, {3, 0, 26, 4},   {64, 257, 16, 300}};

}  // namespace

TEST_CASE("skinny_nn and skinny_tn match a double reference", "[simd][linalg]") {
  for (const Case& k : kCases) {
    const std::int64_t ld = skinny_stride(k.l);
    const auto a = test::gaussian(
        static_cast<std::size_t>(std::max<std::int64_t>(k.rows * k.lda, 1)), 11, 1.0f);
    const auto b = skinny(k.inner, k.l, 12);
    const auto y0 = skinny(k.rows, k.l, 13);
    for (bool accumulate : {false, true}) {
      auto y = y0;
      skinny_nn(a.data(), k.lda, k.rows, k.inner, b.data(), k.l, ld, y.data(), accumulate);
      for (std::int64_t i = 0; i < k.rows; ++i)
        for (std::int64_t c = 0; c < k.l; ++c) {
          double ref = accumulate ? y0[static_cast<std::size_t>(i * ld + c)] : 0.0;
          for (std::int64_t j = 0; j < k.inner; ++j)
            ref += double(a[static_cast<std::size_t>(i * k.lda + j)]) *
                   b[static_cast<std::size_t>(j * ld + c)];
          CHECK(std::fabs(y[static_cast<std::size_t>(i * ld + c)] - ref) <=
                1e-5 * (k.inner + 1) * 4);
        }
    }
    // y (inner × l) += Aᵀ·B with A the rows × inner block and B rows × l.
    const auto bt = skinny(k.rows, k.l, 14);
    auto z0 = skinny(k.inner, k.l, 15), z = z0;
    skinny_tn(a.data(), k.lda, k.rows, k.inner, bt.data(), k.l, ld, z.data());
    for (std::int64_t j = 0; j < k.inner; ++j)
      for (std::int64_t c = 0; c < k.l; ++c) {
        double ref = z0[static_cast<std::size_t>(j * ld + c)];
        for (std::int64_t i = 0; i < k.rows; ++i)
          ref += double(a[static_cast<std::size_t>(i * k.lda + j)]) *
                 bt[static_cast<std::size_t>(i * ld + c)];
        CHECK(std::fabs(z[static_cast<std::size_t>(j * ld + c)] - ref) <= 1e-5 * (k.rows + 1) * 4);
      }
  }
}

TEST_CASE("every SIMD path gives the scalar path's bytes", "[simd][linalg]") {
  const auto paths = available_simd_paths();
  for (const Case& k : kCases) {
    const std::int64_t ld = skinny_stride(k.l);
    auto a = test::gaussian(static_cast<std::size_t>(std::max<std::int64_t>(k.rows * k.lda, 1)), 21,
                            1.0f);
    // Values whose products and sums round: a multiply-then-add would differ from the FMA.
    for (std::size_t i = 0; i < a.size(); i += 7)
      a[i] = std::ldexp(a[i], 20) + 0x1p-3f;
    const auto b = skinny(k.inner, k.l, 22), bt = skinny(k.rows, k.l, 23);
    const auto y0 = skinny(k.rows, k.l, 24), z0 = skinny(k.inner, k.l, 25);
    for (bool accumulate : {false, true}) {
      auto ref = y0;
      skinny_nn(a.data(), k.lda, k.rows, k.inner, b.data(), k.l, ld, ref.data(), accumulate,
                SimdPath::Scalar);
      for (SimdPath p : paths) {
        INFO("path " << simd_path_name(p) << ", rows " << k.rows << ", l " << k.l);
        auto y = y0;
        skinny_nn(a.data(), k.lda, k.rows, k.inner, b.data(), k.l, ld, y.data(), accumulate, p);
        for (std::int64_t i = 0; i < k.rows; ++i)  // the l real columns of each row
          CHECK(std::memcmp(y.data() + i * ld, ref.data() + i * ld, 4 * k.l) == 0);
      }
    }
    auto zref = z0;
    skinny_tn(a.data(), k.lda, k.rows, k.inner, bt.data(), k.l, ld, zref.data(), SimdPath::Scalar);
    for (SimdPath p : paths) {
      INFO("path " << simd_path_name(p) << ", rows " << k.rows << ", l " << k.l);
      auto z = z0;
      skinny_tn(a.data(), k.lda, k.rows, k.inner, bt.data(), k.l, ld, z.data(), p);
      for (std::int64_t j = 0; j < k.inner; ++j)
        CHECK(std::memcmp(z.data() + j * ld, zref.data() + j * ld, 4 * k.l) == 0);
    }
  }
  CHECK(paths.size() >= 1);
}
