// What the two --to-lora conversions (PiSSA/SORSA -> LoRA in to_lora.cpp, DoRA -> LoRA in
// dora_to_lora.cpp) share: the converted modules and how they are written and reported.
#pragma once

#include <vector>

#include "ckptkit/adapters/lora.hpp"
#include "ckptkit/commands/merge/merge.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/io/output_dir.hpp"

namespace ckpt {

/// One module after conversion: its LoRA factors, its report row, and the energy of the delta
/// it stands for and of what it misses.
struct ConvertedModule {
  LoraModule module;
  Json row;
  double dropped = 0, total = 0;
};

/// The report row of a converted module: the base tensor it applies to, its shape, ranks in and
/// out, ‖ΔW‖, the energy dropped and its fraction.
Json converted_row(const std::string& base_tensor, const LoraModule& from, const ConvertedModule& c,
                   Clock::time_point t0);

/// The config of the converted adapter, from the adapter it came from: init_lora_weights left at
/// PEFT's default (a string would make PEFT re-initialise) and base_model_name_or_path from
/// --base-model-id, else kept.
LoraConfig converted_config(const LoraConfig& from, const ToLoraOptions& o);

/// r = lora_alpha = `rank` (scaling 1), no rsLoRA, and rank_pattern / alpha_pattern entries for
/// the modules that kept fewer directions.
void set_uniform_rank(LoraConfig& cfg, int rank, const std::vector<ConvertedModule>& done);

/// Adds the rows to `report`, writes OUT as a PEFT LoRA with `cfg`, sets the totals (modules, r,
/// params, dropped / total energy) and commits the output with the report.
Json commit_converted_lora(std::vector<ConvertedModule>& done, const LoraConfig& cfg,
                           Report& report, OutputDir& out, const ToLoraOptions& o,
                           Clock::time_point start);

}  // namespace ckpt
