// Progress on stderr, only when stderr is a terminal; the only place lib/ writes to the terminal.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace ckpt {

class Progress {
 public:
  /// `enabled` false (e.g. --quiet) silences it; it is also silent when stderr is not a tty.
  Progress(std::string label, std::uint64_t total_bytes, bool enabled = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Adds done work; thread-safe.
  void advance(std::uint64_t bytes, const std::string& current = {});
  void finish();

 private:
  void draw(const std::string& current);

  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool active_;
  bool finished_ = false;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

/// Writes a warning line to stderr (also under --quiet: a warning is not progress); the one
/// sanctioned message channel of lib/.
void warn(const std::string& message);

}  // namespace ckpt
