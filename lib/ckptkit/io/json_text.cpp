#include "ckptkit/io/json_text.hpp"

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/file_bytes.hpp"

namespace ckpt {
namespace {

template <typename J>
J parse_bounded(std::string_view text, const std::string& where) {
  check_json_bounds(text, where);
  try {
    return J::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, where + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace

void check_json_bounds(std::string_view text, const std::string& where) {
  if (text.size() > kMaxJsonBytes)
    fail(ErrorKind::Format, where + ": JSON of " + std::to_string(text.size()) +
                                " bytes, more than the " + std::to_string(kMaxJsonBytes >> 20) +
                                " MiB ckptkit reads");
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        fail(ErrorKind::Format,
             where + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // unbalanced brackets are the parser's to report
    }
  }
}

nlohmann::json parse_json_text(std::string_view text, const std::string& where) {
  return parse_bounded<nlohmann::json>(text, where);
}

nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& where) {
  return parse_bounded<nlohmann::ordered_json>(text, where);
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_input_text(path, kMaxJsonBytes), path.string());
}

nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path) {
  return parse_ordered_json_text(read_input_text(path, kMaxJsonBytes), path.string());
}

}  // namespace ckpt
