#include "ckptkit/engine/stitch_report.hpp"

#include <algorithm>
#include <set>

#include "ckptkit/core/error.hpp"

namespace ckpt {
namespace {

bool is_timing_key(const std::string& k) {
  return k == "seconds" || k.ends_with("_seconds") || k.find("gflops") != std::string::npos ||
         k == "timing";
}

/// `j` without its timing fields (top level).
Json without_timings(Json j) {
  for (auto it = j.begin(); it != j.end();)
    it = is_timing_key(it.key()) ? j.erase(it) : std::next(it);
  return j;
}

/// Combines a value every part reports but no command fold derives from rows: the same value
/// in every part is kept; timings become the slowest part's wall time ("seconds"), the best rate
/// (gflops) or the summed work (other *_seconds); objects that differ only in timings (a plan
/// every part computes over all targets) keep the first part's values with the slowest timings.
Json combine_generic(const std::string& key, const std::vector<Json>& v, const std::string& what) {
  const bool all_equal =
      std::all_of(v.begin(), v.end(), [&](const Json& x) { return x == v.front(); });
  if (all_equal) return v.front();
  const bool numbers = std::all_of(v.begin(), v.end(), [](const Json& x) { return x.is_number(); });
  if (is_timing_key(key) && numbers) {
    double out =
        key == "seconds" || key.find("gflops") != std::string::npos ? v.front().get<double>() : 0.0;
    for (const auto& x : v) {
      if (key == "seconds" || key.find("gflops") != std::string::npos)
        out = std::max(out, x.get<double>());
      else
        out += x.get<double>();
    }
    return out;
  }
  if (std::all_of(v.begin(), v.end(), [&](const Json& x) {
        return x.is_object() && without_timings(x) == without_timings(v.front());
      })) {
    Json out = v.front();
    for (const auto& x : v)
      for (const auto& [k, t] : x.items())
        if (is_timing_key(k) && t.is_number() && t.get<double>() > out[k].get<double>()) out[k] = t;
    return out;
  }
  fail(ErrorKind::Unsupported, "report.json: " + what + " \"" + key +
                                   "\" differs between parts and stitch has no rule to combine it");
}

}  // namespace

Json merge_part_reports(const std::vector<Json>& reps, const std::vector<std::string>& where,
                        const std::function<std::size_t(const Json&)>& position,
                        const std::vector<std::string>& files, const CommandSpec* spec) {
  Json merged = reps.front();
  merged["argv"] = argv_without_shard(merged.value("argv", std::vector<std::string>{}));
  const auto strip_paths = [](Json in) {
    for (auto& i : in)
      if (i.is_object()) i.erase("path");
    return in;
  };
  for (std::size_t k = 1; k < reps.size(); ++k) {
    const std::string& who = where[k];
    if (reps[k].value("command", Json()) != merged.value("command", Json()))
      fail(ErrorKind::Usage, who + ": another command than " + where.front());
    if (reps[k].value("settings", Json()) != merged.value("settings", Json()))
      fail(ErrorKind::Usage, who + ": settings differ from " + where.front());
    if (strip_paths(reps[k].value("inputs", Json())) != strip_paths(merged.value("inputs", Json())))
      fail(ErrorKind::Usage, who + ": inputs differ from " + where.front());
  }
  // Rows: every part's, in the single run's (checkpoint) order.
  const auto merge_rows = [&](const std::string& key) {
    std::vector<std::pair<std::size_t, Json>> rows;
    for (const auto& r : reps)
      for (const auto& row : r.value(key, Json::array()))
        rows.emplace_back(position(row), row);
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    Json out = Json::array();
    for (auto& [p, row] : rows)
      out.push_back(std::move(row));
    return out;
  };
  static const std::set<std::string> fixed = {"tool",     "version", "schema_version",
                                              "command",  "argv",    "inputs",
                                              "settings", "tensors", "totals"};
  for (const auto& item : reps.front().items()) {
    const std::string& key = item.key();
    const Json& value = item.value();
    if (fixed.count(key)) continue;
    const bool same = std::all_of(reps.begin(), reps.end(),
                                  [&](const Json& r) { return r.value(key, Json()) == value; });
    if (same) continue;
    if (value.is_array()) {
      merged[key] = merge_rows(key);
      continue;
    }
    std::vector<Json> v;
    for (const auto& r : reps)
      v.push_back(r.value(key, Json()));
    merged[key] = combine_generic(key, v, "entry");
  }
  merged["tensors"] = merge_rows("tensors");
  // Totals in the first part's key order (a single run's): the command's fold over the merged
  // rows where it gives the key, the generic rules for the rest.
  merged.erase("totals");
  const Json folded = spec && spec->totals ? spec->totals(merged, files) : Json::object();
  Json totals = Json::object();
  const Json first_totals = reps.front().value("totals", Json::object());  // outlives the loop
  for (const auto& [key, value] : first_totals.items()) {
    if (folded.contains(key)) {
      totals[key] = folded[key];
      continue;
    }
    std::vector<Json> v;
    for (const auto& r : reps)
      v.push_back(r["totals"].value(key, Json()));
    totals[key] = combine_generic(key, v, "totals");
  }
  for (const auto& [key, value] : folded.items())  // a part with no rows may lack a row total
    if (!totals.contains(key)) totals[key] = value;
  merged["totals"] = totals;
  return merged;
}

std::vector<std::string> argv_without_shard(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--shard") {
      ++i;
      continue;
    }
    if (argv[i].rfind("--shard=", 0) == 0) continue;
    out.push_back(argv[i]);
  }
  return out;
}

}  // namespace ckpt
