// Rng determinism, size parsing and SHA-256 against published / independently computed vectors.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/core/sha256.hpp"
#include "ckptkit/core/tensor.hpp"
#include "ckptkit/core/units.hpp"

using namespace ckpt;

TEST_CASE("Rng: same (seed, name) gives the same stream, others differ", "[rng]") {
  Rng a(1, "layer.0.q_proj"), b(1, "layer.0.q_proj"), c(1, "layer.0.k_proj"),
      d(2, "layer.0.q_proj");
  int same_c = 0, same_d = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto x = a.next_u64();
    REQUIRE(x == b.next_u64());
    same_c += x == c.next_u64();
    same_d += x == d.next_u64();
  }
  CHECK(same_c == 0);
  CHECK(same_d == 0);
  // normal() interleaves the Box-Muller pair deterministically too.
  Rng n1(9, "x"), n2(9, "x");
  for (int i = 0; i < 101; ++i)
    REQUIRE(n1.normal() == n2.normal());
}

TEST_CASE("Rng: uniform in 0..1 and normal has mean 0, variance 1", "[rng]") {
  Rng r(123, "moments");
  const int n = 200000;
  double umin = 1, umax = 0, sum = 0, sum2 = 0, sum4 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    umin = std::min(umin, u);
    umax = std::max(umax, u);
  }
  CHECK(umin >= 0.0);
  CHECK(umax < 1.0);
  for (int i = 0; i < n; ++i) {
    const double x = r.normal();
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean, kurt = sum4 / n;
  // Standard errors: mean 1/sqrt(n) = 0.0022, variance sqrt(2/n) = 0.0032; allow ~5 sigma.
  INFO("mean " << mean << " variance " << var << " fourth moment " << kurt);
  CHECK(std::fabs(mean) < 0.012);
  CHECK(std::fabs(var - 1.0) < 0.016);
  CHECK(std::fabs(kurt - 3.0) < 0.1);
}

TEST_CASE("parse_size: decimal and binary units", "[units]") {
  CHECK(parse_size("123", "x") == 123);
  CHECK(parse_size("5GB", "x") == 5000000000ull);
  CHECK(parse_size("5gb", "x") == 5000000000ull);
  CHECK(parse_size("10KB", "x") == 10000);
  CHECK(parse_size("500MB", "x") == 500000000ull);
  CHECK(parse_size("4GiB", "x") == 4ull << 30);
  CHECK(parse_size("1G", "x") == 1ull << 30);
  CHECK(parse_size("512M", "x") == 512ull << 20);
  CHECK(parse_size("2K", "x") == 2048);
  CHECK(parse_size("1.5GB", "x") == 1500000000ull);
  CHECK(parse_size("0", "x") == 0);
  CHECK(parse_size("1TiB", "x") == 1ull << 40);
  CHECK(parse_size("10000000TB", "x") == 10000000000000000000ull);  // 1e19 > INT64_MAX
  for (const char* bad : {"", "GB", "5XB", "-1", "abc", "1e9", "5 GB", "99999999999TB", "1..5GB"}) {
    INFO("input '" << bad << "'");
    try {
      parse_size(bad, "--max-shard-size");
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Usage);
      CHECK(std::string(e.what()).find("--max-shard-size") != std::string::npos);
    }
  }
  CHECK(format_bytes(999) == "999 B");
  CHECK(format_bytes(1500000000ull) == "1.50 GB");
}

TEST_CASE("sha256 against FIPS 180-2 and hashlib vectors", "[sha256]") {
  auto hex = [](const std::string& s) {
    return sha256_hex(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()));
  };
  CHECK(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Lengths around the 55/56/64-byte padding boundaries (python3 hashlib).
  const std::pair<int, const char*> lengths[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {57, "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"}};
  for (const auto& [n, digest] : lengths) {
    INFO("length " << n);
    CHECK(hex(std::string(static_cast<std::size_t>(n), 'a')) == digest);
  }
  std::string all;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 256; ++i)
      all.push_back(static_cast<char>(i));
  CHECK(hex(all) == "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363");
}

TEST_CASE("error messages and exit codes", "[error]") {
  CHECK(located("a.safetensors", "w", "bad") == "a.safetensors: tensor 'w': bad");
  CHECK(located("a.safetensors", "", "bad") == "a.safetensors: bad");
  CHECK(exit_code(ErrorKind::Format) == 2);
  CHECK(exit_code(ErrorKind::Usage) == 2);
  CHECK(exit_code(ErrorKind::Io) == 1);
  CHECK(exit_code(ErrorKind::Interrupted) == 130);
  CHECK(numel({}) == 1);
  CHECK(numel({3, 0, 2}) == 0);
  CHECK(shape_str({384, 1536}) == "[384, 1536]");
}
