#pragma once
/// Small string formatting helpers for messages.

#include <cstdint>
#include <string>
#include <vector>

namespace ckpt {

/// "a,b,c": integers joined by commas (factor lists in messages, as typed on the command line).
inline std::string join(const std::vector<std::int64_t>& v) {
  std::string s;
  for (std::size_t k = 0; k < v.size(); ++k) {
    if (k) s += ',';
    s += std::to_string(v[k]);
  }
  return s;
}

}  // namespace ckpt
