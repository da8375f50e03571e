#include "ckptkit/core/error.hpp"

namespace ckpt {

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage:
    case ErrorKind::Format:
    case ErrorKind::Unsupported:
      return 2;
    case ErrorKind::Io:
    case ErrorKind::Numeric:
      return 1;
    case ErrorKind::Interrupted:
      return 130;
    case ErrorKind::Internal:
      return 3;
  }
  return 3;
}

std::string located(const std::string& file, const std::string& tensor, const std::string& what) {
  std::string out;
  if (!file.empty()) out += file + ": ";
  if (!tensor.empty()) out += "tensor '" + tensor + "': ";
  return out + what;
}

}  // namespace ckpt
