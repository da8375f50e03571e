// Built only with LAPACK (CKPTKIT_USE_LAPACK, the default); linalg falls back to Eigen without.
#ifdef CKPTKIT_HAVE_LAPACKE
#include "ckptkit/linalg/lapack.hpp"

#include <dlfcn.h>

#include <string>

#include "ckptkit/core/error.hpp"

namespace ckpt {

namespace {

// Debian's runtime names (libopenblas0, liblapacke). cblas and the thread controls come from
// OpenBLAS itself, as they did when it was linked; LAPACKE brings its LAPACK (OpenBLAS's too).
constexpr const char* kOpenBlas = "libopenblas.so.0";
constexpr const char* kLapacke = "liblapacke.so.3";

void* open_library(const char* name, const char* package) {
  // Never closed: the routines are used until exit, and OpenBLAS's destructor runs then.
  void* h = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = ::dlerror();
    fail(ErrorKind::Io, std::string("cannot load ") + name + " (" + (why ? why : "not found") +
                            "): install the Debian package " + package + " (scripts/setup does)");
  }
  return h;
}

template <class Fn>
Fn symbol(void* lib, const char* library, const char* name) {
  void* p = ::dlsym(lib, name);
  if (!p) fail(ErrorKind::Io, std::string(library) + " has no " + name);
  return reinterpret_cast<Fn>(p);
}

Lapack load() {
  void* blas = open_library(kOpenBlas, "libopenblas0");
  // Optional: another BLAS build may lack them (then it has no pool of its own to stop).
  if (auto* threads = reinterpret_cast<void (*)(int)>(::dlsym(blas, "openblas_set_num_threads")))
    threads(1);
  if (auto* shutdown = reinterpret_cast<int (*)()>(::dlsym(blas, "blas_thread_shutdown_")))
    shutdown();  // what OpenBLAS runs at exit; with one thread it never restarts the pool
  void* lapacke = open_library(kLapacke, "liblapacke");
  Lapack l;
  l.sgesdd = symbol<decltype(l.sgesdd)>(lapacke, kLapacke, "LAPACKE_sgesdd");
  l.dsyevd = symbol<decltype(l.dsyevd)>(lapacke, kLapacke, "LAPACKE_dsyevd");
  l.dsyrk = symbol<decltype(l.dsyrk)>(blas, kOpenBlas, "cblas_dsyrk");
  return l;
}

}  // namespace

const Lapack& lapack() {
  static const Lapack l = load();
  return l;
}

}  // namespace ckpt
#endif  // CKPTKIT_HAVE_LAPACKE
