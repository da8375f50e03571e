// The one exception type of ckptkit, and how each kind maps to a process exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace ckpt {

/// What went wrong, which decides the exit code (docs/cli.md):
/// Usage and Format are the user's input (exit 2), Io and Numeric are runtime failures (exit 1),
/// Interrupted is SIGINT/SIGTERM (exit 130), Internal is a bug (exit 3).
enum class ErrorKind { Usage, Format, Unsupported, Io, Numeric, Interrupted, Internal };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

/// Exit code for an error kind: 2 for bad input or usage, 1 for runtime failures, 130 interrupted.
int exit_code(ErrorKind kind);

/// "<file>: tensor '<name>': <what>" with the parts that are empty left out.
std::string located(const std::string& file, const std::string& tensor, const std::string& what);

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}

}  // namespace ckpt

/// Programmer errors: cheap checks that stay on in release builds (like GGML_ASSERT).
#define CKPT_ASSERT(cond)                                                                          \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      ::ckpt::fail(::ckpt::ErrorKind::Internal, std::string("internal error: ") + #cond + " at " + \
                                                    __FILE__ + ":" + std::to_string(__LINE__));    \
  } while (0)
