#include "ckptkit/io/regex.hpp"

#include <re2/re2.h>

namespace ckpt {

std::optional<FullRegex> FullRegex::compile(const std::string& pattern, std::string* error) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(32 << 20);  // the compiled program's budget: a crafted pattern fails fast
  auto re = std::make_shared<const re2::RE2>(pattern, options);
  if (!re->ok()) {
    if (error) *error = re->error();
    return std::nullopt;
  }
  FullRegex r;
  r.re_ = std::move(re);
  return r;
}

bool FullRegex::full_match(std::string_view text) const {
  return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

}  // namespace ckpt
