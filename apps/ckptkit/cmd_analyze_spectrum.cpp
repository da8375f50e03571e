// ckptkit analyze-spectrum: Per-layer spectra and fine-tuning drift, JSON/CSV/HTML
#include "commands.hpp"

namespace ckpt::cli {

void setup_analyze_spectrum(CLI::App& app, Run& run) { add_planned(app, run, "analyze-spectrum", "Per-layer spectra and fine-tuning drift, JSON/CSV/HTML"); }

}  // namespace ckpt::cli
