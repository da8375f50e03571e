#pragma once
/// Small string formatting helpers (messages, and numbers as other tools print them).

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

/// Text from an input file made safe for a one-line message: control and non-ASCII bytes as
/// \xNN, cut to `max` characters with "...".
std::string printable(const std::string& text, std::size_t max = 120);

/// The candidate nearest to `word` by edit distance (insertions, deletions, substitutions and
/// swaps of neighbours), when close enough to be a typo: at most 1 edit for words of up to 4
/// characters, 2 up to 8, 3 beyond. Empty when none is. For "did you mean" hints.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

/// printf into a std::string.
std::string strprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

/// Python's repr() of a double (shortest round-trip, scientific below 1e-4 and from 1e16), as
/// json.dumps writes floats: the bitsandbytes quant_state JSON is written the same way.
std::string python_float_repr(double v);

}  // namespace ckpt
