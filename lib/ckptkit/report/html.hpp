// A self-contained HTML page builder for reports: title, sections, paragraphs, tables built from
// JSON rows, inline SVG figures. The page loads nothing from the network (inline CSS, no scripts,
// no fonts), so it can be opened offline, attached to an issue, or rendered headless.
//
// Example:
//   HtmlPage page("analyze-spectrum: bytegpt-base");
//   page.section("Spectra").paragraph("One line per layer.").svg(svg::line_plot(p));
//   page.table(rows, {"name", "alpha"});
//   page.write("OUT/report.html");
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

class HtmlPage {
 public:
  /// A page whose <title> and top heading are `title`.
  explicit HtmlPage(std::string title);

  /// Starts a new section (<h2>, listed in the table of contents the page gets from 3 sections
  /// on); later content goes under it.
  HtmlPage& section(std::string_view heading);
  /// A sub-heading (<h3>).
  HtmlPage& subsection(std::string_view heading);
  /// A paragraph of plain text (escaped).
  HtmlPage& paragraph(std::string_view text);
  /// A paragraph in a grey note box (escaped).
  HtmlPage& note(std::string_view text);
  /// Key/value lines as a compact two-column table (values printed as JSON scalars).
  HtmlPage& key_values(const nlohmann::ordered_json& object);
  /// A table from an array of JSON objects. `columns` picks and orders the keys (empty: the keys
  /// of the first row). Numbers are printed with 4 significant digits and right-aligned; at most
  /// `max_rows` rows are shown, followed by a line saying how many were left out.
  HtmlPage& table(const nlohmann::ordered_json& rows, const std::vector<std::string>& columns = {},
                  std::size_t max_rows = 500);
  /// An inline SVG element (trusted markup from svg.hpp), with an optional caption.
  HtmlPage& svg(std::string_view svg_markup, std::string_view caption = {});
  /// Several figures side by side (wrapping on narrow screens).
  HtmlPage& figure_row(const std::vector<std::string>& svg_markups);
  /// Raw, trusted HTML.
  HtmlPage& raw(std::string_view html);

  /// The whole document.
  std::string str() const;
  /// Writes the document to `path` (ErrorKind::Io on failure).
  void write(const std::filesystem::path& path) const;

 private:
  std::string title_;
  std::string body_;
  std::vector<std::string> sections_;  // for the table of contents
};

/// Escapes text for HTML content and attributes.
std::string html_escape(std::string_view text);
/// A JSON scalar as table-cell text: numbers with `digits` significant digits, strings as is.
std::string json_cell_text(const nlohmann::ordered_json& v, int digits = 4);

}  // namespace ckpt
