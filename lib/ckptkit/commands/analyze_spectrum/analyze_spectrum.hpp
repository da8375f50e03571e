// `ckptkit analyze-spectrum`: per-matrix singular value spectra and WeightWatcher-style metrics of
// one checkpoint, or the drift between a base and a fine-tuned checkpoint (--compare) or a base
// and a LoRA adapter applied to it (--adapter). Writes OUT/report.json, one CSV per table, and a
// self-contained OUT/report.html with SVG plots. See docs/analyze-spectrum.md.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ckptkit/analysis/drift.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt {

struct AnalyzeSpectrumOptions {
  std::filesystem::path input;                   ///< the (base) checkpoint
  std::optional<std::filesystem::path> compare;  ///< fine-tuned checkpoint: same names and shapes
  std::optional<std::filesystem::path> adapter;  ///< PEFT LoRA adapter: W_ft = W + ΔW
  CommonOptions common;  ///< output, force, targets, exec, report_path, argv
  DriftOptions drift;
  double exact_below = 1e-6;  ///< see SpectrumOptions::exact_below
};

/// Runs the analysis and writes OUT. Returns the report JSON (also OUT/report.json).
/// Mismatched --compare checkpoints or an adapter for another model: Error(Format) naming the
/// tensors. 1-D tensors matched by --target are listed as skipped, not analysed.
Json run_analyze_spectrum(const AnalyzeSpectrumOptions& options);

/// The Markdown summary printed on stdout, built from the report JSON.
std::string analyze_spectrum_markdown(const Json& report);

/// Writes OUT/report.html from the report JSON and the spectra (internal; exposed for tests).
struct SpectrumPlotData {
  std::string name;
  std::vector<double> sigma;        ///< base (or only) spectrum
  std::vector<double> sigma_ft;     ///< fine-tuned spectrum (drift modes)
  std::vector<double> sigma_delta;  ///< spectrum of ΔW (drift modes)
};
void write_spectrum_html(const Json& report, const std::vector<SpectrumPlotData>& spectra,
                         const std::filesystem::path& path);

/// The spectra back from singular_values.csv (9 significant digits), in file order: what the
/// page of a stitched output is drawn from. Empty when the file is absent.
std::vector<SpectrumPlotData> plots_from_csv(const std::filesystem::path& csv);

/// The report's row-derived totals (CommandSpec::totals): one fold for a run and for stitch.
Json analyze_spectrum_totals(const Json& report, const std::vector<std::string>& files);

}  // namespace ckpt
