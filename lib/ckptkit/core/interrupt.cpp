#include "ckptkit/core/interrupt.hpp"

#include <semaphore.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_exit_claimed{false};
sem_t g_wake;  // posted by the handler (sem_post is async-signal-safe), awaited by the watchdog

/// The temporaries to remove on a forced stop (StopCleanup), the callbacks to run when a stop
/// is requested (StopListener), and the lock commits hold.
struct Registry {
  std::mutex lock;
  std::vector<std::filesystem::path> paths;
  std::vector<const std::function<void()>*> listeners;
};
Registry& registry() {
  static Registry r;
  return r;
}

/// Drops `path` from the registry (its lock held by the caller).
void forget(Registry& r, const std::filesystem::path& path) {
  const auto it = std::find(r.paths.begin(), r.paths.end(), path);
  if (it != r.paths.end()) r.paths.erase(it);
}

extern "C" void on_signal(int sig) {
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig)) sem_post(&g_wake);
}

[[noreturn]] void watchdog() {
  while (sem_wait(&g_wake) != 0) {
  }
  Registry& r = registry();
  {
    const std::lock_guard<std::mutex> hold(r.lock);
    for (const auto* on_stop : r.listeners)
      (*on_stop)();
  }
  std::this_thread::sleep_for(kStopGrace);
  r.lock.lock();  // held until _exit: no commit can start or be half done
  if (!claim_exit()) {
    // main is already printing its own error line and returning.
    r.lock.unlock();
    for (;;)
      std::this_thread::sleep_for(std::chrono::hours(1));
  }
  for (const auto& p : r.paths) {
    std::error_code ec;
    std::filesystem::remove_all(p, ec);
  }
  std::fprintf(stderr, "ckptkit: error: interrupted by signal %d\n", g_signal.load());
  std::fflush(stderr);
  ::_exit(130);
}

}  // namespace

void install_interrupt_handlers() {
  sem_init(&g_wake, 0, 0);
  std::thread(watchdog).detach();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupt_requested() {
  return g_signal.load(std::memory_order_relaxed) != 0;
}
int interrupt_signal() {
  return g_signal.load();
}

void throw_if_interrupted() {
  if (interrupt_requested())
    fail(ErrorKind::Interrupted, "interrupted by signal " + std::to_string(g_signal.load()));
}

bool claim_exit() {
  return !g_exit_claimed.exchange(true);
}

StopCleanup::StopCleanup(std::filesystem::path path) : path_(std::move(path)) {
  Registry& r = registry();
  const std::lock_guard<std::mutex> hold(r.lock);
  r.paths.push_back(path_);
}

StopCleanup::~StopCleanup() {
  if (!registered_) return;
  Registry& r = registry();
  const std::lock_guard<std::mutex> hold(r.lock);
  forget(r, path_);
}

StopListener::StopListener(std::function<void()> on_stop) : on_stop_(std::move(on_stop)) {
  Registry& r = registry();
  const std::lock_guard<std::mutex> hold(r.lock);
  r.listeners.push_back(&on_stop_);
}

StopListener::~StopListener() {
  Registry& r = registry();
  const std::lock_guard<std::mutex> hold(r.lock);
  std::erase(r.listeners, &on_stop_);
}

void StopCleanup::commit(const std::function<void()>& commit) {
  Registry& r = registry();
  const std::lock_guard<std::mutex> hold(r.lock);
  commit();
  forget(r, path_);
  registered_ = false;
}

}  // namespace ckpt
