#include "ckptkit/adapters/lora.hpp"

#include <algorithm>
#include <cmath>

#include "ckptkit/io/regex.hpp"

namespace ckpt {

bool peft_pattern_matches(const std::string& key, const std::string& module) {
  if (module == key) return true;
  // Keys come from adapter_config.json, i.e. from a file: RE2 answers in time linear in the
  // module name whatever the key (std::regex ran for minutes on "l*a*0\\.x", fuzz_adapter_config).
  std::string error;
  if (const auto re = FullRegex::compile("(.*\\.)?(" + key + ")", &error))
    return re->full_match(module);
  // A key that is not a regex RE2 takes (a backreference, unbalanced brackets) can still be a
  // literal suffix.
  return module.size() > key.size() &&
         module.compare(module.size() - key.size(), key.size(), key) == 0 &&
         module[module.size() - key.size() - 1] == '.';
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

std::optional<int> peft_layer_index(const std::string& module,
                                    const std::vector<std::string>& patterns) {
  // PEFT: re.match(r".*\.[^.]*\.(\d+)\.", key) without layers_pattern, else the first pattern p
  // for which re.match(rf".*\.{p}\.(\d+)\.", key) matches. In components c[0].c[1]...: the
  // number is some c[i] with 2 <= i <= size-2 (a dot before c[i-1], a dot after c[i]), and `.*`
  // is greedy, so the last such i counts. Patterns are taken literally, one component each.
  std::vector<std::string> c;
  std::size_t start = 0;
  while (true) {
    const auto dot = module.find('.', start);
    c.push_back(module.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  auto number = [](const std::string& s) {
    return !s.empty() && s.size() <= 9 &&
           std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  };
  auto last_after = [&](const std::string* pattern) -> std::optional<int> {
    for (std::size_t i = c.size() - 1; i-- > 2;)
      if (number(c[i]) && (!pattern || c[i - 1] == *pattern)) return std::stoi(c[i]);
    return std::nullopt;
  };
  if (c.size() < 4) return std::nullopt;
  if (patterns.empty()) return last_after(nullptr);
  for (const auto& p : patterns)
    if (const auto i = last_after(&p)) return i;
  return std::nullopt;
}

}  // namespace ckpt
