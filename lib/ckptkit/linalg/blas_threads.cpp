#include "ckptkit/linalg/blas_threads.hpp"

#include <mutex>

// Weak, so a BLAS without these symbols still links (and they stay null). blas_thread_shutdown_
// is what OpenBLAS itself runs at exit and around fork(); a later call with more than one
// thread would start the pool again, which ckptkit never asks for.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" int blas_thread_shutdown_(void) __attribute__((weak));

namespace ckpt {

void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
}

void quiet_blas_threads() {
  blas_single_threaded();
  static std::once_flag once;
  std::call_once(once, [] {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
  });
}

}  // namespace ckpt
