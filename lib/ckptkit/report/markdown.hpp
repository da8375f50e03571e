// Markdown (GitHub-flavoured) tables for summaries printed on stdout and written to docs.
// Cells have '|' escaped and newlines replaced by spaces; numbers get 4 significant digits and
// are right-aligned; columns are padded so the table also reads well as plain text.
//
// Example:
//   std::cout << markdown_table(rows, {"name", "alpha"});
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// A table from a header and rows of already-formatted cells. `right_align[i]` right-aligns
/// column i (missing entries: left).
std::string markdown_table(const std::vector<std::string>& header,
                           const std::vector<std::vector<std::string>>& rows,
                           const std::vector<bool>& right_align = {});
/// A table from an array of JSON objects: `columns` picks keys (empty: first row's keys); numbers
/// get `digits` significant digits and are right-aligned. At most `max_rows` rows, then "…".
std::string markdown_table(const nlohmann::ordered_json& rows,
                           const std::vector<std::string>& columns = {}, int digits = 4,
                           std::size_t max_rows = 1000);
/// A cell's text with '|' escaped and line breaks turned into spaces.
std::string markdown_escape(std::string_view text);

}  // namespace ckpt
