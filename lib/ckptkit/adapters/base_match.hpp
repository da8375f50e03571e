// Where an adapter's modules land in a base checkpoint, by PEFT's rules: the module names of the
// task model PEFT wrapped, resolved to the checkpoint's tensors with or without the base-model
// prefix (io/architecture.hpp), and the orientation PEFT picks from the module's class (a Conv1D
// target forces fan_in_fan_out, whatever adapter_config.json says).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/io/architecture.hpp"

namespace ckpt {

class Checkpoint;

/// Weights of the base that exist only in a logical form (quantized weights): float name -> shape.
using LogicalShapes = std::map<std::string, std::vector<std::int64_t>>;

/// The base tensor `module` + `suffix` (".weight", ".bias") stands for: the first of
/// naming.checkpoint_candidates(module) present in `base` or `logical`. Error(Format)
/// "<adapter_file>: tensor '<module>': ..." naming every name tried and what was assumed.
std::string match_base_tensor(const std::string& adapter_file, const std::string& module,
                              const std::string& suffix, const Checkpoint& base,
                              const ModuleNaming& naming, const LogicalShapes* logical = nullptr);

/// Like match_base_tensor, but nullopt when no candidate exists (a head the base lacks).
std::optional<std::string> find_base_tensor(const std::string& module, const std::string& suffix,
                                            const Checkpoint& base, const ModuleNaming& naming,
                                            const LogicalShapes* logical = nullptr);

/// PEFT's orientation of a non-embedding module's delta: Conv1D modules of a known family are
/// stored [in, out] (fan_in_fan_out forced true), its nn.Linear ones [out, in] (forced false);
/// for an unknown family the adapter's own fan_in_fan_out stands. `note` gets PEFT's warning when
/// the adapter said otherwise.
bool peft_transposed(const ModuleNaming& naming, const std::string& checkpoint_module,
                     bool adapter_says, const std::string& module, std::string* note);

}  // namespace ckpt
