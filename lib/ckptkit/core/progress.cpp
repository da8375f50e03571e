#include "ckptkit/core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/core/timing.hpp"

namespace ckpt {

std::string format_rate(double per_second, const std::string& unit) {
  if (unit != "B") return strprintf("%.1f %s/s", per_second, unit.c_str());
  const char* units[] = {"B/s", "kB/s", "MB/s", "GB/s", "TB/s"};
  int u = 0;
  while (per_second >= 1000.0 && u < 4)
    per_second /= 1000.0, ++u;
  return strprintf(per_second < 10 ? "%.2f %s" : "%.0f %s", per_second, units[u]);
}

std::string format_clock(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  if (s >= 3600) return strprintf("%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  return strprintf("%ld:%02ld", s / 60, s % 60);
}

Progress::Progress(std::string label, std::uint64_t total, bool enabled, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      active_(enabled && isatty(STDERR_FILENO) == 1),
      start_(Clock::now()),
      phase_start_(start_) {
  if (!active_) return;
  ticker_ = std::thread([this] { tick(); });
  on_stop_.emplace([this] { wake_.notify_all(); });
}

Progress::~Progress() {
  finish();
}

void Progress::tick() {
  std::unique_lock lock(mutex_);
  while (!finished_) {
    draw();
    wake_.wait_for(lock, std::chrono::milliseconds(250));
  }
}

void Progress::advance(std::uint64_t amount, const std::string& current) {
  if (!active_) return;
  std::lock_guard lock(mutex_);
  done_ += amount;
  if (!current.empty()) current_ = current;
}

void Progress::working_on(const std::string& current) {
  if (!active_) return;
  std::lock_guard lock(mutex_);
  current_ = current;
}

void Progress::phase(const std::string& label, std::uint64_t total) {
  if (!active_) return;
  std::lock_guard lock(mutex_);
  label_ = label;
  if (total > 0) {
    total_ = total;
    done_ = 0;
    phase_start_ = Clock::now();
  }
  current_.clear();
  draw();
}

void Progress::draw() {
  const double frac =
      total_ ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)) : 0.0;
  const int width = 24;
  std::string bar(static_cast<std::size_t>(frac * width), '#');
  bar.resize(width, '.');
  const double phase_secs = seconds_since(phase_start_);
  std::string line = strprintf("%s [%s] %5.1f%%", label_.c_str(), bar.c_str(), 100.0 * frac);
  if (done_ > 0 && phase_secs > 0.5) {
    const double rate = static_cast<double>(done_) / phase_secs;
    line += "  " + format_rate(rate, unit_);
    if (done_ < total_) line += "  ETA " + format_clock(static_cast<double>(total_ - done_) / rate);
  }
  line += "  " + format_clock(seconds_since(start_));
  if (interrupt_requested()) {
    line += "  stopping (interrupted; removing the partial output)";
  } else if (!current_.empty()) {
    line +=
        "  " + (current_.size() > 48 ? "..." + current_.substr(current_.size() - 45) : current_);
  }
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!active_) return;
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    // A stop the ticker has not drawn yet (the unwinding can beat its wake-up on a loaded
    // machine): acknowledge it before the line goes, so "stopping" always precedes the error.
    if (interrupt_requested()) draw();
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

void warn(const std::string& message) {
  std::fprintf(stderr, "warning: %s\n", message.c_str());
}

}  // namespace ckpt
