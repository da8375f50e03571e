#include "ckptkit/core/simd_path.hpp"

#include <algorithm>
#include <cstdlib>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {
namespace {

constexpr SimdPath kAll[] = {SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512, SimdPath::Neon};

/// The Highway targets the kernel files compile for on this architecture (their
/// HWY_DISABLED_TARGETS leave exactly these).
bool built_for(SimdPath p) {
  switch (p) {
    case SimdPath::Scalar:
      return true;
    case SimdPath::Avx2:
    case SimdPath::Avx512:
#if defined(__x86_64__)
      return true;
#else
      return false;
#endif
    case SimdPath::Neon:
#if defined(__aarch64__)
      return true;
#else
      return false;
#endif
  }
  return false;
}

/// What Highway's targets of the same name compile for (its HWY_TARGET_STR_AVX2 / _AVX3); the
/// GCC/clang builtin also checks that the OS saves the vector registers.
bool cpu_has(SimdPath p) {
  switch (p) {
    case SimdPath::Scalar:
      return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    case SimdPath::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
             __builtin_cpu_supports("f16c");
    case SimdPath::Avx512:
      return cpu_has(SimdPath::Avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw");
#endif
#if defined(__aarch64__)
    case SimdPath::Neon:
      return true;  // part of ARMv8-A
#endif
    default:
      return false;
  }
}

std::string names_of(const std::vector<SimdPath>& paths) {
  std::string names;
  for (SimdPath p : paths)
    names += (names.empty() ? "" : ", ") + std::string(simd_path_name(p));
  return names;
}

SimdPath choose() {
  const auto avail = available_simd_paths();
  const char* env = std::getenv("CKPTKIT_SIMD");
  const std::string want = env ? env : "";
  if (want.empty() || want == "native") return avail.back();
  const std::string names = names_of(avail);
  for (SimdPath p : kAll)
    if (simd_path_name(p) == want) {
      if (std::find(avail.begin(), avail.end(), p) != avail.end()) return p;
      fail(ErrorKind::Usage, "CKPTKIT_SIMD=" + want + ": this CPU or build cannot run it (" +
                                 "available: " + names + ")");
    }
  fail(ErrorKind::Usage, "CKPTKIT_SIMD=" + printable(want) +
                             ": not a SIMD path (scalar, avx2, avx512, neon or native; "
                             "available here: " +
                             names + ")");
}

}  // namespace

std::string_view simd_path_name(SimdPath p) {
  switch (p) {
    case SimdPath::Scalar:
      return "scalar";
    case SimdPath::Avx2:
      return "avx2";
    case SimdPath::Avx512:
      return "avx512";
    case SimdPath::Neon:
      return "neon";
  }
  return "?";
}

std::vector<SimdPath> available_simd_paths() {
  std::vector<SimdPath> out;
  for (SimdPath p : kAll)
    if (built_for(p) && cpu_has(p)) out.push_back(p);
  return out;
}

SimdPath active_simd_path() {
  static const SimdPath chosen = choose();
  return chosen;
}

std::string simd_summary() {
  std::string names;
  for (SimdPath p : available_simd_paths())
    names += (names.empty() ? "" : ", ") + std::string(simd_path_name(p));
  return "simd: " + std::string(simd_path_name(active_simd_path())) + " (available: " + names + ")";
}

}  // namespace ckpt
