#include "ckptkit/core/interrupt.hpp"

#include <atomic>
#include <csignal>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

}  // namespace

void install_interrupt_handlers() {
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

}  // namespace ckpt
