// OpenBLAS's own thread pool, kept out of the way. ckptkit runs every BLAS/LAPACK call on one
// thread (parallelism belongs to the caller: one matrix per TBB task, and a fixed thread count
// inside keeps sums bit-identical whatever --threads is). A pthreads OpenBLAS starts its pool
// when it is loaded, and the idle threads spin on sched_yield for ~0.1 s before they sleep:
// measurable CPU and wall time on a short command and a 2-core machine.
#pragma once

namespace ckpt {

/// Pins OpenBLAS to one thread and stops its pool. Call first thing in main; idempotent, a no-op
/// without OpenBLAS.
void quiet_blas_threads();

/// Pins OpenBLAS to one thread (once per process; what every BLAS caller in linalg does first).
void blas_single_threaded();

}  // namespace ckpt
