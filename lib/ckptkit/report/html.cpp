#include "ckptkit/report/html.hpp"

#include <cmath>
#include <cstdio>

#include "ckptkit/core/error.hpp"

namespace ckpt {

namespace {

constexpr const char* kCss =
    R"(body{font-family:sans-serif;margin:24px auto;max-width:1400px;color:#222;padding:0 16px}
h1{font-size:22px;border-bottom:2px solid #4e79a7;padding-bottom:4px}
h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:15px}
p{line-height:1.45;max-width:70em}
.note{background:#f4f4f4;border-left:4px solid #bbb;padding:6px 10px}
table{border-collapse:collapse;font-size:12px;margin:8px 0;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:3px 7px;white-space:nowrap}
th{background:#f0f3f7;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:8px 0;display:inline-block;vertical-align:top}
figcaption{font-size:12px;color:#555;max-width:640px}
.row{display:flex;flex-wrap:wrap;gap:8px}
)";

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string json_cell_text(const nlohmann::ordered_json& v, int digits) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d)) return std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf");
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*g", digits, d);
    return buf;
  }
  return v.dump();
}

HtmlPage::HtmlPage(std::string title) : title_(std::move(title)) {
  body_ = "<h1>" + html_escape(title_) + "</h1>\n";
}

HtmlPage& HtmlPage::section(std::string_view heading) {
  sections_.emplace_back(heading);
  body_ +=
      "<h2 id=\"s" + std::to_string(sections_.size()) + "\">" + html_escape(heading) + "</h2>\n";
  return *this;
}

HtmlPage& HtmlPage::subsection(std::string_view heading) {
  body_ += "<h3>" + html_escape(heading) + "</h3>\n";
  return *this;
}

HtmlPage& HtmlPage::paragraph(std::string_view text) {
  body_ += "<p>" + html_escape(text) + "</p>\n";
  return *this;
}

HtmlPage& HtmlPage::note(std::string_view text) {
  body_ += "<p class=\"note\">" + html_escape(text) + "</p>\n";
  return *this;
}

HtmlPage& HtmlPage::key_values(const nlohmann::ordered_json& object) {
  body_ += "<table>\n";
  for (const auto& [k, v] : object.items())
    body_ += "<tr><th>" + html_escape(k) + "</th><td>" +
             html_escape(v.is_primitive() ? json_cell_text(v, 6) : v.dump()) + "</td></tr>\n";
  body_ += "</table>\n";
  return *this;
}

HtmlPage& HtmlPage::table(const nlohmann::ordered_json& rows,
                          const std::vector<std::string>& columns, std::size_t max_rows) {
  std::vector<std::string> cols = columns;
  if (cols.empty() && rows.is_array() && !rows.empty() && rows[0].is_object())
    for (const auto& [k, v] : rows[0].items())
      cols.push_back(k);
  body_ += "<table>\n<tr>";
  for (const auto& c : cols)
    body_ += "<th>" + html_escape(c) + "</th>";
  body_ += "</tr>\n";
  std::size_t shown = 0;
  for (const auto& row : rows) {
    if (shown == max_rows) break;
    body_ += "<tr>";
    for (const auto& c : cols) {
      const auto it = row.find(c);
      if (it == row.end()) {
        body_ += "<td></td>";
        continue;
      }
      const bool numeric = it->is_number();
      body_ += std::string(numeric ? "<td class=\"n\">" : "<td>") +
               html_escape(it->is_primitive() ? json_cell_text(*it) : it->dump()) + "</td>";
    }
    body_ += "</tr>\n";
    ++shown;
  }
  body_ += "</table>\n";
  if (rows.size() > shown)
    body_ += "<p class=\"note\">" + std::to_string(rows.size() - shown) +
             " more rows are in the CSV and report.json.</p>\n";
  return *this;
}

HtmlPage& HtmlPage::svg(std::string_view svg_markup, std::string_view caption) {
  body_ += "<figure>\n";
  body_ += svg_markup;
  if (!caption.empty()) body_ += "<figcaption>" + html_escape(caption) + "</figcaption>\n";
  body_ += "</figure>\n";
  return *this;
}

HtmlPage& HtmlPage::figure_row(const std::vector<std::string>& svg_markups) {
  body_ += "<div class=\"row\">\n";
  for (const auto& m : svg_markups)
    body_ += "<figure>\n" + m + "</figure>\n";
  body_ += "</div>\n";
  return *this;
}

HtmlPage& HtmlPage::raw(std::string_view html) {
  body_ += html;
  return *this;
}

std::string HtmlPage::str() const {
  // A table of contents after the heading once the page has a few sections.
  std::string body = body_;
  if (sections_.size() >= 3) {
    std::string toc = "<nav class=\"toc\"><b>Contents</b><ol>\n";
    for (std::size_t i = 0; i < sections_.size(); ++i)
      toc += "<li><a href=\"#s" + std::to_string(i + 1) + "\">" + html_escape(sections_[i]) +
             "</a></li>\n";
    toc += "</ol></nav>\n";
    const std::size_t after_h1 = body.find("</h1>\n");
    body.insert(after_h1 == std::string::npos ? 0 : after_h1 + 6, toc);
  }
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         html_escape(title_) + "</title>\n<style>\n" + kCss + "</style>\n</head>\n<body>\n" + body +
         "</body>\n</html>\n";
}

void HtmlPage::write(const std::filesystem::path& path) const {
  const std::string text = str();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail(ErrorKind::Io, path.string() + ": cannot create HTML report");
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, path.string() + ": cannot write HTML report");
}

}  // namespace ckpt
