#include "ckptkit/adapters/lora.hpp"

#include <cmath>
#include <regex>

namespace ckpt {

bool peft_pattern_matches(const std::string& key, const std::string& module) {
  if (module == key) return true;
  try {
    const std::regex re("(.*\\.)?(" + key + ")$");
    return std::regex_match(module, re);
  } catch (const std::regex_error&) {
    // A key that is not a regex can still be a literal suffix.
    return module.size() > key.size() &&
           module.compare(module.size() - key.size(), key.size(), key) == 0 &&
           module[module.size() - key.size() - 1] == '.';
  }
}

std::pair<int, double> LoraConfig::rank_alpha_for(const std::string& module) const {
  int rank = r;
  double alpha = lora_alpha;
  for (const auto& [key, value] : rank_pattern)
    if (peft_pattern_matches(key, module)) {
      rank = value;
      break;
    }
  for (const auto& [key, value] : alpha_pattern)
    if (peft_pattern_matches(key, module)) {
      alpha = value;
      break;
    }
  return {rank, alpha};
}

double LoraConfig::scaling_for(const std::string& module) const {
  const auto [rank, alpha] = rank_alpha_for(module);
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank;
}

}  // namespace ckpt
