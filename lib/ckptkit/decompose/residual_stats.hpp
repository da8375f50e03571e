// The statistics of PiSSA's residual cast (pissa.cpp): how far the residual moved when it was
// rounded to the output dtype, in absolute terms and in ulps of the stored and the input values.
// Element j of a run goes to lane j % 8, so the sums have one order on every SIMD path and thread
// count; the vector kernels (residual_stats.cpp, Highway: AVX2, AVX-512, NEON) do the full groups
// of 8 with the scalar code's operations, and the scalar code (add_cast_stats) is the reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/simd_path.hpp"

namespace ckpt::residual {

constexpr std::size_t kLanes = 8;

/// Per-lane accumulators. Cache-line aligned: blocks measured by different threads never share a
/// line.
struct alignas(64) LaneStats {
  double sq[kLanes] = {};             // Σ x², x the residual before the cast
  float max_abs[kLanes] = {};         // max |stored − x|
  double max_ulps[kLanes] = {};       // max |stored − x| / ulp(input entry)
  double max_res_ulps[kLanes] = {};   // max |stored − x| / ulp(stored)
  std::uint64_t within[kLanes] = {};  // entries with |stored − x| ≤ 1 ulp of the input entry
};

/// ulp(v) as stored in a dtype: 2^(e − mant), e the exponent of v clamped to at least emin.
struct UlpFormat {
  int mant = 23, emin = -126;
  static UlpFormat of(DType t);
};

/// Adds x[0..n) (the residual), stored[0..n) (x as cast) and w[0..n) (the input entries, f32) to
/// s, element j in lane j % 8 (n need not be a multiple of 8), on `path`'s kernels.
void add_cast_stats(const float* x, const float* stored, const float* w, std::size_t n,
                    UlpFormat ulp, LaneStats& s, SimdPath path = active_simd_path());

struct Kernels {
  /// The full groups of 8 of add_cast_stats; returns how many elements it did.
  std::size_t (*cast_stats)(const float* x, const float* stored, const float* w, std::size_t n,
                            UlpFormat ulp, LaneStats& s);
};

/// The kernels of `path`, or nullptr for Scalar (and a path this build has none for).
const Kernels* kernels_for(SimdPath path);

}  // namespace ckpt::residual
