// adapter_config.json of an adapter whose modules were computed by N `--shard K/N` parts (each
// part's config lists its own modules): PEFT LoRA / SORSA (r, lora_alpha, rank_pattern,
// alpha_pattern and target_modules recomputed over all modules) or ckptkit MPO (target_modules and
// modules in the single run's order). Every other key must agree between the parts.
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ckpt {

/// Where each module of the whole adapter sits in the single run.
struct PartModules {
  std::vector<std::vector<std::string>> part_modules;  ///< the modules part k computed
  std::vector<std::string> all_modules;                ///< every module, single-run order
  std::vector<std::string> candidates;                 ///< module names of every 2-D input tensor
  /// The single-run position of the module a key names (e.g. "<prefix>.<module>.lora_A").
  std::function<std::size_t(const std::string&)> position_of_key;
};

/// The stitched config's text. `cfg[k]` is part k's config, `where[k]` its file (for messages);
/// Error(Usage) naming both files when the parts disagree.
std::string merge_part_adapter_configs(const std::vector<nlohmann::ordered_json>& cfg,
                                       const std::vector<std::string>& where,
                                       const PartModules& order);

}  // namespace ckpt
