// Deterministic per-tensor random numbers: the same (seed, tensor name) gives the same stream on
// every thread count and every platform (no std:: distributions, whose output is unspecified).
#pragma once

#include <cstdint>
#include <string_view>

namespace ckpt {

/// 64-bit FNV-1a of a string.
std::uint64_t hash_name(std::string_view s);

/// xoshiro256** seeded by splitmix64 from (seed, stream); normal() by Box–Muller.
class Rng {
 public:
  Rng(std::uint64_t seed, std::string_view stream);
  std::uint64_t next_u64();
  /// Uniform in [0, 1) with 53 random bits.
  double uniform();
  /// Standard normal.
  double normal();

 private:
  std::uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace ckpt
