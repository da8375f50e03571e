#include "ckptkit/commands/registry.hpp"

#include "ckptkit/commands/analyze_spectrum/analyze_spectrum.hpp"
#include "ckptkit/commands/lq_decompose/lq_decompose.hpp"
#include "ckptkit/commands/mpo_init/mpo_init.hpp"
#include "ckptkit/commands/quantize/quantize.hpp"
#include "ckptkit/commands/svd_init/svd_init.hpp"

namespace ckpt {

std::vector<CommandSpec> command_specs() {
  CommandSpec spectrum{"analyze-spectrum", analyze_spectrum_totals, {"report.html"}, {}};
  spectrum.derive = [](const Json& report, const std::filesystem::path& out_root) {
    write_spectrum_html(report, plots_from_csv(out_root / "singular_values.csv"),
                        out_root / "report.html");
  };
  return {{"svd-init", svd_init_totals, {}, {}},
          {"mpo-init", mpo_init_totals, {}, {}},
          {"lq-decompose", lq_decompose_totals, {}, {}},
          {"quantize", quantize_totals, {}, {}},
          std::move(spectrum)};
}

}  // namespace ckpt
