#include "ckptkit/adapters/lora.hpp"

#include <cmath>
#include <regex>

namespace ckpt {

namespace {

// Keys come from adapter_config.json, i.e. from a file: a key such as "l*a*0\\.x" made the
// default (backtracking) executor run for minutes (found by fuzz_adapter_config). libstdc++'s
// __polynomial flag selects its breadth-first executor, linear in the module name for a given
// key; it refuses back-references (error_complexity, a regex_error: handled as a literal key).
constexpr auto kSyntax =
#if defined(__GLIBCXX__)
    std::regex::ECMAScript | std::regex_constants::__polynomial;
#else
    std::regex::ECMAScript;
#endif

}  // namespace

bool peft_pattern_matches(const std::string& key, const std::string& module) {
  if (module == key) return true;
  try {
    const std::regex re("(.*\\.)?(" + key + ")$", kSyntax);
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
