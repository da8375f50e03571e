// report.json: what every subcommand writes. A Report holds the tool version, the command line,
// the inputs (name, bytes, sha256 of each safetensors header), per-tensor rows and totals.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ckpt {

using Json = nlohmann::ordered_json;

/// report.json's schema_version: bumped when a field every report has (docs/report-schema.md)
/// changes meaning or goes away; adding a field is not a change.
inline constexpr int kReportSchemaVersion = 1;

struct InputFingerprint {
  std::string file;
  std::uint64_t bytes = 0;
  std::string header_sha256;
};

class Report {
 public:
  Report(std::string command, std::vector<std::string> argv);

  void add_input(const std::string& role, const std::string& path,
                 const std::vector<InputFingerprint>& files);
  /// Adds a per-tensor row (rows keep the order they are added: checkpoint order).
  void add_row(Json row) { rows_.push_back(std::move(row)); }
  Json& settings() { return settings_; }
  Json& totals() { return totals_; }
  Json& extra() { return extra_; }
  const std::vector<Json>& rows() const { return rows_; }

  /// The whole report: tool, version, schema_version, command, argv, inputs, settings, the extra
  /// lists, the per-tensor rows ("tensors") and the totals, in that order.
  Json to_json() const;
  /// Writes `path` as pretty JSON.
  void write(const std::filesystem::path& path) const;
  /// What write() writes: the JSON, indented by 2, with a final newline.
  std::string text() const;

 private:
  std::string command_;
  std::vector<std::string> argv_;
  Json inputs_ = Json::array();
  Json settings_ = Json::object();
  std::vector<Json> rows_;
  Json totals_ = Json::object();
  Json extra_ = Json::object();
};

/// Rounds to `digits` significant digits so reports stay readable and stable.
double round_sig(double v, int digits = 6);

}  // namespace ckpt
