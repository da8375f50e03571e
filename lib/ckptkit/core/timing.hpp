#pragma once
/// Wall-clock helpers for report timings.

#include <chrono>

namespace ckpt {

/// Monotonic clock used for every "seconds" field in reports.
using Clock = std::chrono::steady_clock;

/// Seconds elapsed since `t0`.
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace ckpt
