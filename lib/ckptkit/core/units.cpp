#include "ckptkit/core/units.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

#include "ckptkit/core/error.hpp"

namespace ckpt {

std::uint64_t parse_size(std::string_view text, std::string_view what) {
  auto bad = [&] {
    fail(ErrorKind::Usage, std::string(what) + ": cannot read size '" + std::string(text) +
                               "' (examples: 5GB, 4GiB, 512M, 1000000)");
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) bad();
  double value = 0;
  try {
    std::size_t used = 0;
    value = std::stod(std::string(text.substr(0, i)), &used);
    if (used != i) bad();  // "1..5GB": stod would silently read "1."
  } catch (const std::logic_error&) {
    bad();
  }
  std::string unit(text.substr(i));
  for (auto& c : unit)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KB")
    mult = 1e3;
  else if (unit == "MB")
    mult = 1e6;
  else if (unit == "GB")
    mult = 1e9;
  else if (unit == "TB")
    mult = 1e12;
  else if (unit == "K" || unit == "KIB")
    mult = 1024.0;
  else if (unit == "M" || unit == "MIB")
    mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GIB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TIB")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    bad();
  const double bytes = value * mult;
  // 1.8e19 < 2^64: llround would overflow past 2^63, so round in double and convert unsigned.
  if (!(bytes >= 0) || bytes > 1.8e19) bad();
  return static_cast<std::uint64_t>(std::round(bytes));
}

std::string format_bytes(std::uint64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else if (b >= 1e3)
    std::snprintf(buf, sizeof buf, "%.2f KB", b / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  return buf;
}

}  // namespace ckpt
