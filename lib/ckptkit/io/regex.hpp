// Regular expressions from users and from files (--target / --exclude, PEFT's rank_pattern and
// alpha_pattern keys), matched by RE2: linear time in the text, bounded memory, no recursion, so a
// crafted pattern or a 300k-character tensor name costs microseconds, never a stack overflow.
// RE2 lacks backreferences and lookaround; such patterns are refused (or, for PEFT keys, taken
// literally by the caller).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace re2 {
class RE2;
}

namespace ckpt {

class FullRegex {
 public:
  /// Compiles `pattern` (RE2 syntax, Python-compatible for what PEFT keys use); nullopt with
  /// `error` set when it is invalid, uses what RE2 lacks, or is too large.
  static std::optional<FullRegex> compile(const std::string& pattern, std::string* error);
  /// True when the whole of `text` matches (Python's re.fullmatch).
  bool full_match(std::string_view text) const;

 private:
  std::shared_ptr<const re2::RE2> re_;
};

}  // namespace ckpt
