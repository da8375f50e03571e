// libFuzzer target for the regular expressions of --target / --exclude and PEFT's pattern keys
// (ckpt::FullRegex over RE2). The input is split at its first NUL into a pattern and a subject
// (a module name); the pattern either compiles and full-matches the subject in linear time, or is
// refused with an error message. A subject repeated to 64 KiB checks that time stays linear.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ckptkit/io/regex.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t cut = in.find('\0');
  const std::string pattern(in.substr(0, cut));
  const std::string subject(cut == std::string_view::npos ? "" : in.substr(cut + 1));
  std::string error;
  const auto re = ckpt::FullRegex::compile(pattern, &error);
  if (!re) {
    if (error.empty()) std::abort();
    return 0;
  }
  const bool whole = re->full_match(subject);
  // Full match of a string is a property of the string: the same answer twice.
  if (re->full_match(subject) != whole) std::abort();
  std::string long_subject;
  while (!subject.empty() && long_subject.size() < (64u << 10))
    long_subject += subject;
  (void)re->full_match(long_subject);
  return 0;
}
