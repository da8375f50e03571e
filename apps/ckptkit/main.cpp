// ckptkit: decompose and compress LLM checkpoints. This file only wires subcommands; each
// cmd_<name>.cpp parses its flags and calls the library.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
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
#include "ckptkit/core/simd_path.hpp"
#include "ckptkit/core/strings.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "commands.hpp"
#include "flags.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

/// "did you mean" for a command-line word: " (did you mean 'X'?)" or "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& names) {
  const std::string c = ckpt::closest(word, names);
  return c.empty() ? "" : " (did you mean '" + c + "'?)";
}

/// Before CLI11 sees the arguments: `help [CMD]` is `[CMD] --help`; no command or an unknown one
/// is a one-line error listing or suggesting the commands (CLI11 would say "A subcommand is
/// required" for both). Returns an exit code when it handled the call.
std::optional<int> check_command_word(CLI::App& app, std::vector<std::string>& args) {
  const std::vector<std::string> names = ckpt::cli::command_names(app);
  std::string list;
  for (const auto& n : names)
    list += (list.empty() ? "" : ", ") + n;
  if (args.size() >= 2 && args[1] == "help") {
    args.erase(args.begin() + 1);
    args.push_back("--help");
    if (args.size() == 3 && std::find(names.begin(), names.end(), args[1]) == names.end()) {
      std::fprintf(stderr, "ckptkit: error: no command '%s'%s; commands: %s\n", args[1].c_str(),
                   did_you_mean(args[1], names).c_str(), list.c_str());
      return 2;
    }
    return std::nullopt;
  }
  if (args.size() < 2) {
    std::fprintf(stderr, "ckptkit: error: no command given; commands: %s (ckptkit --help)\n",
                 list.c_str());
    return 2;
  }
  const std::string& word = args[1];
  if (word.empty() || word[0] == '-') return std::nullopt;  // --help, --version, -V
  if (std::find(names.begin(), names.end(), word) != names.end()) return std::nullopt;
  std::fprintf(stderr, "ckptkit: error: no command '%s'%s; commands: %s\n", word.c_str(),
               did_you_mean(word, names).c_str(), list.c_str());
  return 2;
}

/// CLI11's "The following arguments were not expected: 8 --ranks" made useful: the first word
/// that looks like a flag the command does not have, with the nearest flag it does have.
std::string explain_unknown_flag(CLI::App& app, const std::vector<std::string>& args) {
  const auto names = ckpt::cli::command_names(app);
  if (args.size() < 2 || std::find(names.begin(), names.end(), args[1]) == names.end()) return {};
  const CLI::App* cmd = app.get_subcommand(args[1]);
  const std::vector<std::string> flags = ckpt::cli::flag_names(*cmd);
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string word = args[i].substr(0, args[i].find('='));
    if (word.size() < 2 || word[0] != '-' || std::isdigit(static_cast<unsigned char>(word[1])))
      continue;
    if (std::find(flags.begin(), flags.end(), word) != flags.end()) continue;
    return "unknown flag '" + word + "' for '" + cmd->get_name() + "'" + did_you_mean(word, flags) +
           "; see 'ckptkit help " + cmd->get_name() + "'";
  }
  return {};
}

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
  tune_allocator();
  ckpt::install_interrupt_handlers();
  auto& args = ckpt::cli::argv_store();
  args.assign(argv, argv + argc);

  CLI::App app{"ckptkit " CKPTKIT_VERSION
               ": decompose and compress LLM checkpoints (safetensors in, safetensors out)"};
  app.name("ckptkit");
  app.set_version_flag("-V,--version", [] {
    std::string simd;
    try {
      simd = ckpt::simd_summary();  // which kernels run (CKPTKIT_SIMD pins one)
    } catch (const ckpt::Error& e) {
      simd = std::string("simd: ") + e.what();
    }
    return std::string("ckptkit " CKPTKIT_VERSION "\n") + simd;
  });
  app.require_subcommand(1);
  app.footer(
      "Run 'ckptkit <subcommand> --help' for its options and an example.\n"
      "Exit codes: 0 done, 1 runtime failure, 2 usage or invalid input, 130 interrupted.");

  ckpt::cli::Run run;
  for (const auto& setup : ckpt::cli::all_commands())
    setup(app, run);

  std::vector<std::string> words(argv, argv + argc);
  if (const auto code = check_command_word(app, words)) return *code;
  try {
    // CLI11 takes the arguments reversed when given a vector (it pops them from the back).
    std::vector<std::string> reversed(words.rbegin(), words.rend() - 1);
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      const std::string hint = explain_unknown_flag(app, words);
      if (!hint.empty()) msg = hint;
    }
    std::fprintf(stderr, "ckptkit: error: %s\n", msg.c_str());
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
    ckpt::active_simd_path();  // a bad CKPTKIT_SIMD is a usage error before any work
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
