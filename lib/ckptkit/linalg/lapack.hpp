// OpenBLAS and LAPACKE, loaded on first use rather than linked. Linked, they cost every command
// about 4 ms at start (mapping and relocating some 40 MB of libraries) and OpenBLAS starts a
// thread pool in its constructor; a command that never decomposes a matrix (quantize, convert,
// inspect, merge) now pays neither. Only linalg/ includes this, and only when built with LAPACK.
#pragma once

#include <cblas.h>
#include <lapacke.h>

namespace ckpt {

/// The routines linalg calls, resolved from the system's OpenBLAS and LAPACKE.
struct Lapack {
  decltype(&::LAPACKE_sgesdd) sgesdd;
  decltype(&::LAPACKE_dsyevd) dsyevd;
  decltype(&::cblas_dsyrk) dsyrk;
};

/// Loads the libraries once per process (thread-safe) and pins OpenBLAS to one thread with its pool
/// stopped: parallelism belongs to the caller (one matrix per TBB task), and one thread inside
/// keeps sums bit-identical whatever --threads is. A missing library is an Io error (exit 1)
/// naming it and the package that provides it.
const Lapack& lapack();

}  // namespace ckpt
