#include "ckptkit/report/markdown.hpp"

#include <algorithm>

#include "ckptkit/report/html.hpp"

namespace ckpt {

std::string markdown_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

namespace {

/// Display width, counting UTF-8 code points (not bytes) so padding lines up.
std::size_t width_of(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

std::string markdown_table(const std::vector<std::string>& header,
                           const std::vector<std::vector<std::string>>& rows,
                           const std::vector<bool>& right_align) {
  const std::size_t n = header.size();
  std::vector<std::size_t> w(n, 3);
  std::vector<std::string> h(n);
  for (std::size_t i = 0; i < n; ++i)
    h[i] = markdown_escape(header[i]), w[i] = std::max(w[i], width_of(h[i]));
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    std::vector<std::string> c(n);
    for (std::size_t i = 0; i < n && i < r.size(); ++i)
      c[i] = markdown_escape(r[i]), w[i] = std::max(w[i], width_of(c[i]));
    cells.push_back(std::move(c));
  }
  auto right = [&](std::size_t i) { return i < right_align.size() && right_align[i]; };
  auto pad = [&](const std::string& s, std::size_t i) {
    const std::string fill(w[i] - width_of(s), ' ');
    return right(i) ? fill + s : s + fill;
  };
  std::string out = "|";
  for (std::size_t i = 0; i < n; ++i)
    out += " " + pad(h[i], i) + " |";
  out += "\n|";
  for (std::size_t i = 0; i < n; ++i)
    out +=
        (right(i) ? " " + std::string(w[i] - 1, '-') + ":" : " " + std::string(w[i], '-')) + " |";
  out += "\n";
  for (const auto& c : cells) {
    out += "|";
    for (std::size_t i = 0; i < n; ++i)
      out += " " + pad(c[i], i) + " |";
    out += "\n";
  }
  return out;
}

std::string markdown_table(const nlohmann::ordered_json& rows,
                           const std::vector<std::string>& columns, int digits,
                           std::size_t max_rows) {
  std::vector<std::string> cols = columns;
  if (cols.empty() && rows.is_array() && !rows.empty() && rows[0].is_object())
    for (const auto& [k, v] : rows[0].items())
      cols.push_back(k);
  std::vector<bool> numeric(cols.size(), false);
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    if (cells.size() == max_rows) {
      cells.push_back(std::vector<std::string>(cols.size(), "…"));
      break;
    }
    std::vector<std::string> c;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      const auto it = r.find(cols[i]);
      if (it == r.end()) {
        c.emplace_back();
        continue;
      }
      if (it->is_number()) numeric[i] = true;
      c.push_back(it->is_primitive() ? json_cell_text(*it, digits) : it->dump());
    }
    cells.push_back(std::move(c));
  }
  return markdown_table(cols, cells, numeric);
}

}  // namespace ckpt
