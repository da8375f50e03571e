// Which instruction set the vector kernels run (quantization in quant/, the skinny products of
// the randomized SVD in linalg/): the portable scalar reference or one of the Highway targets
// compiled into the binary (AVX2, AVX-512 on x86-64; NEON on aarch64). The best
// one the CPU has is chosen at run time; CKPTKIT_SIMD=scalar|avx2|avx512|neon pins one so a
// single machine can test and benchmark every path. Every path writes the same bytes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

enum class SimdPath { Scalar, Avx2, Avx512, Neon };

std::string_view simd_path_name(SimdPath p);

/// The paths this binary has kernels for and this CPU can run, scalar first, best last.
std::vector<SimdPath> available_simd_paths();

/// The path the kernels use: CKPTKIT_SIMD when set (Error(Usage) when it names no path or one
/// this CPU or build lacks), else the best available. Read once per process.
SimdPath active_simd_path();

/// One line for --version: "simd: avx512 (available: scalar, avx2, avx512)".
std::string simd_summary();

}  // namespace ckpt
