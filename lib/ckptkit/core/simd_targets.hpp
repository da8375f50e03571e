// Internal to the kernel files (core/convert_kernels.cpp, linalg/skinny_gemm.cpp,
// quant/simd_kernels.cpp): the one list of Highway targets they compile for, and the switch that
// hands out a path's kernel table. Include it before <hwy/foreach_target.h>.
//
// Only the targets SimdPath names: SSE4/SSSE3 have no FMA (MulAdd would round twice) and the
// AVX3_DL/SVE variants would add nothing to these kernels.
#pragma once

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS \
  (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)
#endif
#include <hwy/detect_targets.h>

#include "ckptkit/core/simd_path.hpp"

/// True inside the foreach_target pass of a target SimdPath names (the pass for the build's
/// baseline is left to the scalar code).
#define CKPT_SIMD_TARGET \
  (HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_NEON)

#if (HWY_TARGETS & HWY_AVX2) && HWY_ARCH_X86_64
#define CKPT_SIMD_CASE_AVX2(TABLE) \
  case ::ckpt::SimdPath::Avx2: {   \
    TABLE(N_AVX2);                 \
    return &k;                     \
  }
#else
#define CKPT_SIMD_CASE_AVX2(TABLE)
#endif
#if (HWY_TARGETS & HWY_AVX3) && HWY_ARCH_X86_64
#define CKPT_SIMD_CASE_AVX3(TABLE) \
  case ::ckpt::SimdPath::Avx512: { \
    TABLE(N_AVX3);                 \
    return &k;                     \
  }
#else
#define CKPT_SIMD_CASE_AVX3(TABLE)
#endif
#if (HWY_TARGETS & HWY_NEON) && HWY_ARCH_ARM_A64
#define CKPT_SIMD_CASE_NEON(TABLE) \
  case ::ckpt::SimdPath::Neon: {   \
    TABLE(N_NEON);                 \
    return &k;                     \
  }
#else
#define CKPT_SIMD_CASE_NEON(TABLE)
#endif

/// The body of `const Kernels* kernels_for(SimdPath path)`: TABLE(NS) declares
/// `static constexpr Kernels k{...}` from the functions of target namespace NS; Scalar and the
/// paths this build has no target for get nullptr.
#define CKPT_SIMD_KERNELS_FOR(path, TABLE) \
  switch (path) {                          \
    CKPT_SIMD_CASE_AVX2(TABLE)             \
    CKPT_SIMD_CASE_AVX3(TABLE)             \
    CKPT_SIMD_CASE_NEON(TABLE)             \
    default:                               \
      return nullptr;                      \
  }
