#include "ckptkit/core/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace ckpt {

Progress::Progress(std::string label, std::uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(total_bytes),
      active_(enabled && isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  finish();
}

void Progress::advance(std::uint64_t bytes, const std::string& current) {
  if (!active_) return;
  std::lock_guard lock(mutex_);
  done_ += bytes;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  draw(current);
}

void Progress::draw(const std::string& current) {
  const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const int width = 30;
  const int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string cur = current.size() > 48 ? "..." + current.substr(current.size() - 45) : current;
  std::fprintf(stderr, "\r\033[K%s [%s] %5.1f%% %6.1fs %s", label_.c_str(), bar.c_str(),
               100.0 * frac, secs, cur.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!active_ || finished_) return;
  std::lock_guard lock(mutex_);
  finished_ = true;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

void warn(const std::string& message) {
  std::fprintf(stderr, "warning: %s\n", message.c_str());
}

}  // namespace ckpt
