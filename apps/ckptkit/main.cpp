// ckptkit: decompose and compress LLM checkpoints. This file only wires subcommands; each
// cmd_<name>.cpp parses its flags and calls the library.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/linalg/blas_threads.hpp"
#include "commands.hpp"
#include "flags.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// Every tensor allocates and frees buffers of the same few sizes (MBs). With glibc's defaults
// those go back to the kernel on free (trim, or munmap above the mmap threshold) and the next
// tensor pays a page fault per 4 KiB again: half the time of `quantize` on a VM. Keep up to
// 64 MiB of freed memory per arena and serve blocks below 32 MiB from the heap; the working set
// stays bounded by --memory-budget plus that slack (docs/io.md, "Memory").
void tune_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  ckpt::quiet_blas_threads();
  tune_allocator();
  ckpt::install_interrupt_handlers();
  auto& args = ckpt::cli::argv_store();
  args.assign(argv, argv + argc);

  CLI::App app{"ckptkit " CKPTKIT_VERSION
               ": decompose and compress LLM checkpoints (safetensors in, safetensors out)"};
  app.set_version_flag("--version", "ckptkit " CKPTKIT_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Run 'ckptkit <subcommand> --help' for its options and an example.\n"
      "Exit codes: 0 done, 1 runtime failure, 2 usage or invalid input, 130 interrupted.");

  ckpt::cli::Run run;
  for (const auto& setup : ckpt::cli::all_commands())
    setup(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ckptkit: error: %s\n", e.what());
    return 2;
  }
  // One line, whatever an untrusted file or index put into the message, and only one: when the
  // interrupt watchdog already took the exit (core/interrupt.hpp), it prints and exits instead.
  auto print_exit = [](int code, const char* prefix, std::string msg) {
    if (!ckpt::claim_exit())
      for (;;)
        std::this_thread::sleep_for(std::chrono::hours(1));
    for (char& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
    std::fprintf(stderr, "ckptkit: %s: %s\n", prefix, msg.c_str());
    return code;
  };
  auto report = [&](const ckpt::Error& e) {
    return print_exit(ckpt::exit_code(e.kind()), "error", e.what());
  };
  // A failure caused by an input that shrank under us is reported as that (io/file_bytes.hpp).
  auto truncated_input = []() -> std::optional<ckpt::Error> {
    try {
      ckpt::check_inputs_intact();
    } catch (const ckpt::Error& e) {
      return e;
    }
    return std::nullopt;
  };
  try {
    return run ? run() : 2;
  } catch (const ckpt::Error& e) {
    if (const auto t = truncated_input()) return report(*t);
    return report(e);
  } catch (const std::filesystem::filesystem_error& e) {
    // A symlink loop, an unreadable folder, a name the OS refuses: the input's fault, on one line.
    if (const auto t = truncated_input()) return report(*t);
    return report(ckpt::Error(ckpt::ErrorKind::Io, e.what()));
  } catch (const std::bad_alloc&) {
    return print_exit(1, "error", "out of memory");
  } catch (const std::exception& e) {
    if (const auto t = truncated_input()) return report(*t);
    return print_exit(3, "internal error", e.what());
  }
}
