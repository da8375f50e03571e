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

namespace {

/// Names and values come from untrusted headers: control characters (a "\n" in a JSON key) are
/// shown as \xNN so an error stays one line.
std::string printable(const std::string& s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

std::string located(const std::string& file, const std::string& tensor, const std::string& what) {
  std::string out;
  if (!file.empty()) out += file + ": ";
  if (!tensor.empty()) out += "tensor '" + tensor + "': ";
  return printable(out + what);
}

}  // namespace ckpt
