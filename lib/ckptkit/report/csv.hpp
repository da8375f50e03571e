// CSV output (RFC 4180), and reading back what it wrote: fields containing a comma, quote, CR or LF
// are quoted, quotes doubled. Numbers are written with up to 9 significant digits (round-trips f32
// and is stable across runs).
//
// Example:
//   CsvWriter csv({"name", "alpha"});
//   csv.row({"layers.0.q", 3.1});
//   csv.write("OUT/spectrum.csv");
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

class CsvWriter {
 public:
  /// A table with these column names (the header line).
  explicit CsvWriter(std::vector<std::string> header);

  /// Appends a row of JSON scalars (strings, numbers, bools, null → empty); must match the header
  /// length (ErrorKind::Internal otherwise).
  void row(const std::vector<nlohmann::ordered_json>& values);
  /// Appends the header's keys picked from a JSON object (missing keys → empty fields).
  void row_from_object(const nlohmann::ordered_json& object);
  /// The whole table, header first, lines ending in "\n".
  const std::string& str() const { return text_; }
  /// Writes the table to `path` (ErrorKind::Io on failure).
  void write(const std::filesystem::path& path) const;

  /// A CSV table from an array of JSON objects with the given columns (empty: first row's keys).
  static CsvWriter from_rows(const nlohmann::ordered_json& rows,
                             std::vector<std::string> columns = {});

 private:
  std::vector<std::string> header_;
  std::string text_;
};

/// The records of a CSV text, each with its line break (a quoted field may hold a newline).
std::vector<std::string> csv_records(std::string_view text);
/// The fields of one record, unquoted (RFC 4180; the line break ends the record).
std::vector<std::string> csv_fields(std::string_view record);

/// One field, quoted when it has to be.
std::string csv_quote(std::string_view field);
/// A JSON scalar as CSV field text (before quoting).
std::string csv_field_text(const nlohmann::ordered_json& v);

}  // namespace ckpt
