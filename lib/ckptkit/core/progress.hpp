// Progress on stderr, only when stderr is a terminal; the only place lib/ writes to the terminal.
// One line, redrawn in place: the phase, a bar, percent, rate, elapsed time, ETA and the tensor in
// work. A ticker thread redraws it every 250 ms, so the clock moves while a long tensor computes,
// and shows "stopping" as soon as Ctrl-C was pressed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "ckptkit/core/interrupt.hpp"

namespace ckpt {

class Progress {
 public:
  /// `enabled` false (e.g. --quiet) silences it; it is also silent when stderr is not a tty.
  /// `total` counts `unit`s ("B" for bytes, else e.g. "tensors").
  Progress(std::string label, std::uint64_t total, bool enabled = true, std::string unit = "B");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Adds finished work (`current`: what just finished); thread-safe.
  void advance(std::uint64_t amount, const std::string& current = {});
  /// Names the work now in flight (shown instead of the last finished); thread-safe.
  void working_on(const std::string& current);
  /// A new phase of the same command (e.g. "budget solve"): the label changes, and with a new
  /// total (> 0) the bar and the clock of the ETA restart.
  void phase(const std::string& label, std::uint64_t total = 0);
  void finish();

 private:
  void draw();  // with mutex_ held
  void tick();

  std::string label_, unit_, current_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool active_;
  bool finished_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::chrono::steady_clock::time_point start_, phase_start_;
  std::thread ticker_;
  std::optional<StopListener> on_stop_;  // Ctrl-C: redraw "stopping" at once
};

/// "1.2 GB/s", "37 tensors/s": a rate for progress lines and summaries.
std::string format_rate(double per_second, const std::string& unit);
/// "0:42", "12:05", "1:02:03": a duration as a clock.
std::string format_clock(double seconds);

/// Writes a warning line to stderr (also under --quiet: a warning is not progress); the one
/// sanctioned message channel of lib/.
void warn(const std::string& message);

}  // namespace ckpt
