#include "ckptkit/adapters/part_configs.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/core/error.hpp"

namespace ckpt {

std::string merge_part_adapter_configs(const std::vector<nlohmann::ordered_json>& cfg,
                                       const std::vector<std::string>& where,
                                       const PartModules& order) {
  nlohmann::ordered_json merged = cfg.front();
  std::set<std::string> merged_keys;
  if (merged.value("ckptkit_format", "") == "mpo") {
    std::vector<std::pair<std::size_t, std::string>> names;
    std::vector<std::pair<std::size_t, nlohmann::ordered_json>> mods;
    for (const auto& c : cfg) {
      for (const auto& n : c["target_modules"])
        names.emplace_back(order.position_of_key(n.get<std::string>()), n.get<std::string>());
      for (const auto& [k, v] : c["modules"].items())
        mods.emplace_back(order.position_of_key(k), nlohmann::ordered_json{{k, v}});
    }
    std::stable_sort(names.begin(), names.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::stable_sort(mods.begin(), mods.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    merged["target_modules"] = nlohmann::ordered_json::array();
    for (const auto& [i, n] : names)
      merged["target_modules"].push_back(n);
    merged["modules"] = nlohmann::ordered_json::object();
    for (const auto& [i, m] : mods)
      merged["modules"].update(m);
    merged_keys = {"target_modules", "modules"};
  } else if (merged.contains("r") && merged.contains("target_modules")) {
    // Per-module (rank, alpha) from each part's defaults and patterns; the stitched defaults
    // are those of the part with the largest r (the single run's r is the largest rank).
    std::map<std::string, std::pair<double, double>> ra;
    std::vector<std::string> modules;
    double r = 0, alpha = 0;
    bool have = false;
    const std::string alpha_key = merged.contains("lora_alpha") ? "lora_alpha" : "alpha";
    for (std::size_t k = 0; k < cfg.size(); ++k) {
      const auto& c = cfg[k];
      const auto& mods = order.part_modules[k];
      if (mods.empty()) continue;
      const double rk = c["r"].get<double>();
      const double ak = c.value(alpha_key, rk);
      if (!have || rk > r) {
        r = rk;
        alpha = ak;
        have = true;
      }
      for (const auto& m : mods) {
        const auto rp = c.value("rank_pattern", nlohmann::ordered_json::object());
        const auto ap = c.value("alpha_pattern", nlohmann::ordered_json::object());
        ra[m] = {rp.contains(m) ? rp[m].get<double>() : rk,
                 ap.contains(m) ? ap[m].get<double>() : ak};
      }
    }
    for (const auto& m : order.all_modules)
      if (ra.count(m)) modules.push_back(m);
    // The single run writes these from LoraConfig (int r, double alpha) through nlohmann::json,
    // whose object keys are sorted: rebuild with the same types and order.
    nlohmann::json out = nlohmann::json::parse(merged.dump());
    if (have) {
      out["r"] = static_cast<int>(r);
      if (out.contains(alpha_key)) out[alpha_key] = peft_json_number(alpha);
      nlohmann::json rp = nlohmann::json::object(), ap = nlohmann::json::object();
      for (const auto& m : modules) {
        if (ra[m].first != r) rp[m] = static_cast<int>(ra[m].first);
        if (ra[m].second != alpha) ap[m] = peft_json_number(ra[m].second);
      }
      if (out.contains("rank_pattern")) out["rank_pattern"] = rp;
      if (out.contains("alpha_pattern")) out["alpha_pattern"] = ap;
      if (out["target_modules"].is_array())
        out["target_modules"] = target_modules_for(modules, order.candidates);
    }
    for (std::size_t k = 1; k < cfg.size(); ++k)
      for (const auto& [key, v] : cfg[k].items())
        if (!out.contains(key) ||
            (key != "r" && key != alpha_key && key != "rank_pattern" && key != "alpha_pattern" &&
             key != "target_modules" && nlohmann::json::parse(v.dump()) != out[key]))
          fail(ErrorKind::Usage, where[k] + ": \"" + key + "\" differs from " + where.front());
    return out.dump(2) + "\n";
  }
  for (std::size_t k = 1; k < cfg.size(); ++k)
    for (const auto& [key, v] : cfg[k].items())
      if (!merged_keys.count(key) && (!merged.contains(key) || merged[key] != v))
        fail(ErrorKind::Usage, where[k] + ": \"" + key + "\" differs from " + where.front());
  return merged.dump(2) + "\n";
}

}  // namespace ckpt
