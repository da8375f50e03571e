#include "ckptkit/report/report.hpp"

#include <cmath>
#include <cstdio>

#include "ckptkit/core/error.hpp"

namespace ckpt {

Report::Report(std::string command, std::vector<std::string> argv)
    : command_(std::move(command)), argv_(std::move(argv)) {}

void Report::add_input(const std::string& role, const std::string& path,
                       const std::vector<InputFingerprint>& files) {
  Json in = {{"role", role}, {"path", path}, {"files", Json::array()}};
  for (const auto& f : files)
    in["files"].push_back(
        {{"file", f.file}, {"bytes", f.bytes}, {"header_sha256", f.header_sha256}});
  inputs_.push_back(std::move(in));
}

Json Report::to_json() const {
  Json j;
  j["tool"] = "ckptkit";
  j["version"] = CKPTKIT_VERSION;
  j["schema_version"] = kReportSchemaVersion;
  j["command"] = command_;
  j["argv"] = argv_;
  j["inputs"] = inputs_;
  j["settings"] = settings_;
  for (const auto& [k, v] : extra_.items())
    j[k] = v;
  j["tensors"] = rows_;
  j["totals"] = totals_;
  return j;
}

std::string Report::text() const {
  // A path with bytes that are not UTF-8 (file names are bytes) is written with U+FFFD in their
  // place rather than failing the run after its work is done.
  return to_json().dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

void Report::write(const std::filesystem::path& path) const {
  const std::string text = this->text();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail(ErrorKind::Io, path.string() + ": cannot create report");
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, path.string() + ": cannot write report");
}

double round_sig(double v, int digits) {
  if (v == 0 || !std::isfinite(v)) return v;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return std::strtod(buf, nullptr);
}

}  // namespace ckpt
