// Cancellation on SIGINT/SIGTERM. A signal handler can only set a flag, so this is the one
// process-wide state in ckptkit: the pipeline polls it between tensors (and in long parse and
// decompression loops) and unwinds with ErrorKind::Interrupted, letting RAII remove temporary
// outputs. A stop that arrives during a call that cannot poll (an exact SVD of a large matrix in
// Eigen or LAPACK takes seconds) is honoured by a watchdog instead: kStopGrace after the signal it
// removes the registered temporaries (StopCleanup), prints the one error line and exits 130.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>

namespace ckpt {

/// How long a stop request waits for the cooperative unwinding before the watchdog exits.
inline constexpr std::chrono::milliseconds kStopGrace{750};

/// Installs SIGINT/SIGTERM handlers that request a stop, and the watchdog thread (called once by
/// the CLI's main; libraries and tests never install it).
void install_interrupt_handlers();
/// True once a stop was requested.
bool interrupt_requested();
/// Throws Error(Interrupted) when a stop was requested.
void throw_if_interrupted();
/// The signal number that requested the stop, or 0.
int interrupt_signal();

/// Whoever ends the process with an error line calls this first: true for the first caller, false
/// when the watchdog already took the exit (the caller must then print nothing; the watchdog's
/// _exit follows at once).
bool claim_exit();

/// A path (a temporary output) the watchdog removes if it has to end the process; registered for
/// the object's lifetime.
class StopCleanup {
 public:
  explicit StopCleanup(std::filesystem::path path);
  ~StopCleanup();
  StopCleanup(const StopCleanup&) = delete;
  StopCleanup& operator=(const StopCleanup&) = delete;
  /// Runs `commit` (the rename that moves the path into place) with the watchdog held off, so a
  /// forced stop happens wholly before or after it, then forgets the path.
  void commit(const std::function<void()>& commit);

 private:
  std::filesystem::path path_;
  bool registered_ = true;
};

/// A callback the watchdog runs as soon as a stop is requested, before the grace period (the
/// progress line redraws "stopping" at once); registered for the object's lifetime. It runs on
/// the watchdog thread and must only wake its owner.
class StopListener {
 public:
  explicit StopListener(std::function<void()> on_stop);
  ~StopListener();
  StopListener(const StopListener&) = delete;
  StopListener& operator=(const StopListener&) = delete;

 private:
  std::function<void()> on_stop_;
};

}  // namespace ckpt
