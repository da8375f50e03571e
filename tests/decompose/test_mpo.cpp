// MPO / tt-matrix decomposition: exactness, the TT-SVD error bound, the two-core case against an
// independent SVD, factorizations and parameter counts.
#include <Eigen/Dense>
#include <Eigen/SVD>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "ckptkit/adapters/mpo_adapter.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/decompose/mpo.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;

namespace {

constexpr double kExactTol = 1e-5;  // relative Frobenius error of an untruncated MPO in f32

double frob(const std::vector<float>& a) {
  double s = 0;
  for (float v : a)
    s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

double diff_frob(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    const double d = static_cast<double>(a[k]) - b[k];
    s += d * d;
  }
  return std::sqrt(s);
}

// A matrix with a decaying spectrum (like trained weights) so truncation has something to keep.
std::vector<float> structured(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  auto g = test::gaussian(static_cast<std::size_t>(rows * cols), seed);
  const auto u = test::gaussian(static_cast<std::size_t>(rows * 4), seed + 1);
  const auto v = test::gaussian(static_cast<std::size_t>(cols * 4), seed + 2);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      double s = 0.1 * g[r * cols + c];
      for (int k = 0; k < 4; ++k)
        s += u[r * 4 + k] * v[c * 4 + k] / (1.0 + k);
      g[r * cols + c] = static_cast<float>(s);
    }
  return g;
}

}  // namespace

TEST_CASE("untruncated MPO reconstructs W", "[mpo]") {
  const std::int64_t rows = 48, cols = 40;
  const auto w = structured(rows, cols, 11);
  for (const MpoShape& shape : {MpoShape{{4, 3, 4}, {2, 5, 4}}, MpoShape{{6, 8}, {8, 5}},
                                MpoShape{{2, 2, 3, 4}, {2, 2, 2, 5}}, MpoShape{{48}, {40}}}) {
    const Mpo m = mpo_decompose(w.data(), rows, cols, shape, {});
    const double rel = diff_frob(mpo_contract(shape, m.cores), w) / frob(w);
    INFO("cores " << shape.cores() << " relative error " << rel);
    CHECK(rel < kExactTol);
    CHECK(m.bonds() == mpo_bonds_for_cap(shape, 0));
    CHECK(m.params() == mpo_param_count(shape, m.bonds()));
    for (double d : m.discarded)
      CHECK(d < kExactTol * m.norm);
  }
}

TEST_CASE("truncated MPO error obeys the TT-SVD bound", "[mpo]") {
  const std::int64_t rows = 64, cols = 48;
  const auto w = structured(rows, cols, 5);
  const MpoShape shape{{4, 4, 4}, {4, 3, 4}};
  for (const MpoTruncation& t :
       {MpoTruncation{3, 0}, MpoTruncation{8, 0}, MpoTruncation{0, 0.3}, MpoTruncation{6, 0.1}}) {
    const Mpo m = mpo_decompose(w.data(), rows, cols, shape, t);
    const double err = diff_frob(mpo_contract(shape, m.cores), w);
    double bound2 = 0;
    for (double d : m.discarded)
      bound2 += d * d;
    const double bound = std::sqrt(bound2);
    INFO("cap " << t.bond_cap << " tol " << t.tolerance << ": error " << err << " bound " << bound);
    CHECK(bound > 0);
    // Left-orthonormal cores make the dropped parts orthogonal: equality up to f32 rounding.
    CHECK(err <= bound * (1 + 1e-4) + 1e-5 * m.norm);
    CHECK(err >= bound * (1 - 1e-3) - 1e-5 * m.norm);
    if (t.tolerance > 0 && t.bond_cap == 0) CHECK(err <= t.tolerance * m.norm * (1 + 1e-4));
    for (auto b : m.bonds())
      CHECK((t.bond_cap == 0 || b <= t.bond_cap));
  }
}

TEST_CASE("two cores with bond r equal the rank-r SVD of the reshaped matrix", "[mpo]") {
  const std::int64_t rows = 24, cols = 30;
  const auto w = structured(rows, cols, 21);
  const MpoShape shape{{4, 6}, {5, 6}};
  // Independent path: build the (i1 j1) x (i2 j2) matrix in double by explicit indices.
  Eigen::MatrixXd m2(4 * 5, 6 * 6);
  for (int i1 = 0; i1 < 4; ++i1)
    for (int i2 = 0; i2 < 6; ++i2)
      for (int j1 = 0; j1 < 5; ++j1)
        for (int j2 = 0; j2 < 6; ++j2)
          m2(i1 * 5 + j1, i2 * 6 + j2) = w[(i1 * 6 + i2) * cols + (j1 * 6 + j2)];
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(m2);
  const auto& s = svd.singularValues();
  for (std::int64_t r : {1, 3, 7, 15}) {
    double tail = 0;
    for (Eigen::Index k = r; k < s.size(); ++k)
      tail += s[k] * s[k];
    const double expected = std::sqrt(tail);
    const Mpo m = mpo_decompose(w.data(), rows, cols, shape, {r, 0});
    const double err = diff_frob(mpo_contract(shape, m.cores), w);
    INFO("r=" << r << " MPO error " << err << " rank-r SVD error " << expected);
    CHECK(std::abs(err - expected) <= 1e-4 * s[0]);
    CHECK(std::abs(m.discarded[0] - expected) <= 1e-4 * s[0]);
    CHECK(m.bonds() == std::vector<std::int64_t>{1, r, 1});
  }
}

TEST_CASE("core layout: T_k(r_{k-1}, i_k, j_k, r_k) contracted by explicit sums", "[mpo]") {
  const std::int64_t rows = 6, cols = 12;
  const auto w = structured(rows, cols, 3);
  const MpoShape shape{{2, 3}, {4, 3}};
  const Mpo m = mpo_decompose(w.data(), rows, cols, shape, {});
  const auto& a = m.cores[0];
  const auto& b = m.cores[1];
  REQUIRE(a.r_left == 1);
  REQUIRE(b.r_right == 1);
  REQUIRE(a.r_right == b.r_left);
  double worst = 0;
  for (int i1 = 0; i1 < 2; ++i1)
    for (int i2 = 0; i2 < 3; ++i2)
      for (int j1 = 0; j1 < 4; ++j1)
        for (int j2 = 0; j2 < 3; ++j2) {
          double s = 0;
          for (std::int64_t r = 0; r < a.r_right; ++r)
            s += a.data[(i1 * 4 + j1) * a.r_right + r] * b.data[((r * 3 + i2) * 3 + j2)];
          worst = std::max(worst, std::abs(s - w[(i1 * 3 + i2) * cols + j1 * 3 + j2]));
        }
  INFO("max abs difference " << worst);
  CHECK(worst < 1e-5);
}

TEST_CASE("balanced factorization", "[mpo]") {
  CHECK(*balanced_factorization(4096, 5) == std::vector<std::int64_t>{4, 4, 8, 8, 4});
  for (auto [n, k] : {std::pair{384, 3}, {1536, 4}, {11008, 5}, {4096, 3}, {768, 5}, {50400, 5}}) {
    const auto f = balanced_factorization(n, k);
    REQUIRE(f);
    std::int64_t p = 1;
    for (auto x : *f) {
      CHECK(x > 1);
      p *= x;
    }
    INFO(n << " into " << k);
    CHECK(p == n);
    CHECK(static_cast<int>(f->size()) == k);
  }
  // 11008 = 2^8 * 43: the prime 43 stays whole in one (central) core.
  const auto f = *balanced_factorization(11008, 5);
  CHECK(std::count(f.begin(), f.end(), 43) == 1);
  CHECK_FALSE(balanced_factorization(383, 2));  // prime
  CHECK_FALSE(balanced_factorization(12, 4));   // 2*2*3: only 3 prime factors
  CHECK(balanced_factorization(383, 1)->front() == 383);
}

TEST_CASE("parameter counts and the cap for a budget", "[mpo]") {
  const MpoShape s{{4, 4, 8, 8, 4}, {4, 4, 8, 8, 4}};
  // Worked example of research note §1.2 recomputed from the definition.
  CHECK(mpo_bonds_for_cap(s, 0) == std::vector<std::int64_t>{1, 16, 256, 1024, 16, 1});
  CHECK(mpo_param_count(s, mpo_bonds_for_cap(s, 8)) ==
        16 * 8 + 8 * 16 * 8 + 8 * 64 * 8 * 2 + 8 * 16);
  for (std::int64_t budget : {9472, 65536, 107008, 344576}) {
    const auto cap = mpo_cap_for_params(s, budget);
    REQUIRE(cap > 0);
    CHECK(mpo_param_count(s, mpo_bonds_for_cap(s, cap)) <= budget);
    CHECK(mpo_param_count(s, mpo_bonds_for_cap(s, cap + 1)) > budget);
  }
  CHECK(mpo_cap_for_params(s, 10) == 0);
}

TEST_CASE("invalid shapes and truncations are usage errors", "[mpo]") {
  const auto w = structured(12, 10, 1);
  auto kind = [&](const MpoShape& s, MpoTruncation t) {
    try {
      mpo_decompose(w.data(), 12, 10, s, t);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Internal;
  };
  CHECK(kind({{3, 3}, {2, 5}}, {}) == ErrorKind::Usage);     // 9 != 12
  CHECK(kind({{3, 4}, {2, 5, 1}}, {}) == ErrorKind::Usage);  // core counts differ
  CHECK(kind({{3, 4}, {2, 5}}, {-1, 0}) == ErrorKind::Usage);
  CHECK(mpo_shape_problem({{3, 4}, {2, 5}}, 12, 10).empty());
}

TEST_CASE("MPO adapter round trip through write/read", "[mpo][adapter]") {
  test::TempDir dir("ckptkit-mpo-adapter");
  const auto w = structured(12, 20, 7);
  const MpoShape shape{{2, 3, 2}, {4, 5, 1}};
  const Mpo m = mpo_decompose(w.data(), 12, 20, shape, {3, 0});
  MpoAdapter a;
  a.base_model_name_or_path = "residual";
  a.trainable = "auxiliary";
  a.modules.push_back(
      {"layers.0.q_proj", 12, 20, shape, m.cores, mpo_trainable_cores(3, "auxiliary")});
  write_mpo_adapter(dir.path(), a, DType::F32);
  REQUIRE(is_mpo_adapter(dir.path()));
  const MpoAdapter b = read_mpo_adapter(dir.path());
  REQUIRE(b.modules.size() == 1);
  const auto& mb = b.modules[0];
  CHECK(mb.module == "layers.0.q_proj");
  CHECK(mb.shape.row == shape.row);
  CHECK(mb.shape.col == shape.col);
  CHECK(mb.trainable_cores == std::vector<int>{0, 2});
  CHECK(b.trainable == "auxiliary");
  const auto d0 = mpo_contract(shape, m.cores);
  const auto d1 = mpo_module_delta(mb, false);
  CHECK(diff_frob(d0, d1) == 0.0);
  // fan_in_fan_out gives the transpose.
  const auto dt = mpo_module_delta(mb, true);
  CHECK(dt[1 * 12 + 0] == d0[0 * 20 + 1]);
  // A newer format version is refused as unsupported.
  auto cfg = nlohmann::json::parse(std::ifstream(dir / "adapter_config.json"));
  cfg["format_version"] = kMpoFormatVersion + 1;
  std::ofstream(dir / "adapter_config.json") << cfg.dump();
  try {
    read_mpo_adapter(dir.path());
    FAIL("newer version accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Unsupported);
  }
  CHECK_THROWS_AS(mpo_trainable_cores(1, "auxiliary"), Error);
  CHECK_THROWS_AS(mpo_trainable_cores(3, "some"), Error);
}
