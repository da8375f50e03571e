#include "ckptkit/report/csv.hpp"

#include <cmath>
#include <cstdio>

#include "ckptkit/core/error.hpp"
#include "ckptkit/report/html.hpp"

namespace ckpt {

std::string csv_quote(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// Same text as the HTML/markdown tables, with 9 significant digits (round-trips a float).
std::string csv_field_text(const nlohmann::ordered_json& v) {
  return json_cell_text(v, 9);
}

CsvWriter::CsvWriter(std::vector<std::string> header) : header_(std::move(header)) {
  for (std::size_t i = 0; i < header_.size(); ++i) {
    if (i) text_ += ',';
    text_ += csv_quote(header_[i]);
  }
  text_ += "\n";
}

void CsvWriter::row(const std::vector<nlohmann::ordered_json>& values) {
  CKPT_ASSERT(values.size() == header_.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) text_ += ',';
    text_ += csv_quote(csv_field_text(values[i]));
  }
  text_ += "\n";
}

void CsvWriter::row_from_object(const nlohmann::ordered_json& object) {
  std::vector<nlohmann::ordered_json> values;
  values.reserve(header_.size());
  for (const auto& h : header_) {
    const auto it = object.find(h);
    values.push_back(it == object.end() || !it->is_primitive() ? nlohmann::ordered_json() : *it);
  }
  row(values);
}

void CsvWriter::write(const std::filesystem::path& path) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail(ErrorKind::Io, path.string() + ": cannot create CSV file");
  const bool ok = std::fwrite(text_.data(), 1, text_.size(), f) == text_.size();
  if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, path.string() + ": cannot write CSV file");
}

CsvWriter CsvWriter::from_rows(const nlohmann::ordered_json& rows,
                               std::vector<std::string> columns) {
  if (columns.empty() && rows.is_array() && !rows.empty() && rows[0].is_object())
    for (const auto& [k, v] : rows[0].items())
      columns.push_back(k);
  CsvWriter w(columns);
  for (const auto& r : rows)
    w.row_from_object(r);
  return w;
}

std::vector<std::string> csv_records(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : text) {
    cur.push_back(c);
    if (c == '"') quoted = !quoted;
    if (c == '\n' && !quoted) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> csv_fields(std::string_view record) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < record.size(); ++i) {
    const char c = record[i];
    if (quoted) {
      if (c == '"' && i + 1 < record.size() && record[i + 1] == '"') {
        cur.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(std::move(cur));
      cur.clear();
    } else if (c == '\n' || c == '\r') {
      break;
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(std::move(cur));
  return out;
}

}  // namespace ckpt
