// report.html of analyze-spectrum: the story first (a few sentences with the headline numbers),
// then the plots that carry it, then the tables.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ckptkit/commands/analyze_spectrum/analyze_spectrum.hpp"
#include "ckptkit/report/csv.hpp"
#include "ckptkit/report/html.hpp"
#include "ckptkit/report/svg.hpp"

namespace ckpt {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Grid {
  std::vector<int> layers;                                  // sorted layer indices
  std::vector<std::string> modules;                         // module labels in first-seen order
  std::map<std::pair<int, std::string>, const Json*> cell;  // (layer, module) -> row
};

Grid make_grid(const Json& rows) {
  Grid g;
  std::set<int> layers;
  for (const auto& r : rows) {
    const int layer = r.value("layer", -1);
    if (layer < 0) continue;
    const std::string module = r.value("module", "");
    layers.insert(layer);
    if (std::find(g.modules.begin(), g.modules.end(), module) == g.modules.end())
      g.modules.push_back(module);
    g.cell[{layer, module}] = &r;
  }
  g.layers.assign(layers.begin(), layers.end());
  return g;
}

/// Short column label: the last dotted part when those are unique, else the whole label.
std::vector<std::string> short_labels(const std::vector<std::string>& modules) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& m : modules) {
    const auto dot = m.rfind('.');
    out.push_back(dot == std::string::npos ? m : m.substr(dot + 1));
    seen.insert(out.back());
  }
  return seen.size() == modules.size() ? out : modules;
}

std::string heat(const Grid& g, const std::string& key, const std::string& title,
                 const std::string& label, bool annotate = true, bool log_color = false,
                 bool signed_values = false) {
  svg::HeatMap h;
  h.diverging = signed_values;
  h.title = title;
  h.color_label = label;
  h.col_labels = short_labels(g.modules);
  h.annotate = annotate;
  h.log_color = log_color;
  for (int l : g.layers) {
    h.row_labels.push_back("layer " + std::to_string(l));
    std::vector<double> row;
    for (const auto& m : g.modules) {
      const auto it = g.cell.find({l, m});
      double v = kNaN;
      if (it != g.cell.end() && it->second->contains(key) && (*it->second)[key].is_number())
        v = (*it->second)[key].get<double>();
      row.push_back(v);
    }
    h.values.push_back(std::move(row));
  }
  if (g.layers.size() > 24) h.annotate = false;
  return svg::heat_map(h);
}

std::vector<double> ranks(std::size_t n) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = static_cast<double>(i + 1);
  return x;
}

std::vector<double> energy(const std::vector<double>& sigma) {
  std::vector<double> c(sigma.size());
  double total = 0, acc = 0;
  for (double s : sigma)
    total += s * s;
  for (std::size_t i = 0; i < sigma.size(); ++i)
    c[i] = total > 0 ? (acc += sigma[i] * sigma[i]) / total : kNaN;
  return c;
}

std::string fmt(double v, int digits = 3) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

}  // namespace

void write_spectrum_html(const Json& j, const std::vector<SpectrumPlotData>& spectra,
                         const std::filesystem::path& path) {
  const std::string mode = j["settings"]["mode"];
  const bool drift = mode != "spectrum";
  const Json& t = j["totals"];
  std::string subject = j["inputs"].empty() ? "" : j["inputs"][0]["path"].get<std::string>();
  if (drift && j["inputs"].size() > 1)
    subject += " vs " + j["inputs"][1]["path"].get<std::string>();
  HtmlPage page("analyze-spectrum: " + subject);

  // --- The story in numbers.
  const Json& rows = j["tensors"];
  const Grid grid = make_grid(rows);
  std::string story =
      std::to_string(t["matrices"].get<std::uint64_t>()) +
      " weight matrices analysed (full spectra, no size cap). Power-law exponent alpha of "
      "the eigenvalue tail: mean " +
      fmt(t["alpha_mean"].get<double>()) + ", median " + fmt(t["alpha_median"].get<double>()) +
      " (WeightWatcher reads alpha < 2 as over-fit, alpha > 6 as under-trained).";
  {
    std::vector<double> spikes, sr;
    for (const auto& r : rows) {
      spikes.push_back(r.value("mp_spikes", 0));
      sr.push_back(r.value("stable_rank", 0.0));
    }
    if (!spikes.empty()) {
      double ssum = 0;
      for (double x : spikes)
        ssum += x;
      story +=
          " On average " + fmt(ssum / spikes.size()) +
          " singular values per matrix stand above the Marchenko-Pastur edge of a random bulk: the "
          "learned structure sits in those few directions.";
    }
  }
  page.paragraph(story);
  if (drift) {
    std::string d =
        "Drift (" + mode + "): ||dW||_F/||W||_F is " +
        fmt(t["rel_delta_fro_median"].get<double>()) + " at the median (" +
        fmt(t["rel_delta_fro_min"].get<double>()) + " to " +
        fmt(t["rel_delta_fro_max"].get<double>()) + "). 90% of the energy of dW lies in rank " +
        fmt(t["delta_rank90_median"].get<double>()) + " (median), so the update is " +
        (t["delta_rank90_median"].get<double>() <
                 0.25 * (rows.empty() ? 1.0 : rows[0]["shape"][1].get<double>())
             ? "low-rank compared with the matrices."
             : "spread over many directions.") +
        " Intruder dimensions (top-" + std::to_string(j["settings"]["intruder_k"].get<int>()) +
        " fine-tuned left singular vectors with best |cos| < " +
        fmt(j["settings"]["intruder_eps"].get<double>()) +
        " to every base vector): " + std::to_string(t["intruders"].get<std::uint64_t>()) + " in " +
        std::to_string(t["matrices_with_intruders"].get<std::uint64_t>()) + " of " +
        std::to_string(t["compared"].get<std::uint64_t>()) + " matrices. SORSA: mean dSigma " +
        fmt(t["sorsa_dsigma_mean"].get<double>()) + ", mean dD " +
        fmt(t["sorsa_dd_mean"].get<double>()) + "; mean change of alpha " +
        fmt(t["delta_alpha_mean"].get<double>()) + ".";
    page.paragraph(d);
  }
  if (!j["skipped"].empty())
    page.note(std::to_string(j["skipped"].size()) +
              " tensor(s) matched but not analysed (see the Skipped table).");

  // --- Spectra per module type, one line per layer (colour = depth).
  std::map<std::string, const SpectrumPlotData*> by_name;
  for (const auto& s : spectra)
    by_name[s.name] = &s;
  const auto labels = short_labels(grid.modules);
  const std::size_t nl = grid.layers.size();
  auto layer_color = [&](std::size_t li) {
    return svg::sequential_color(nl > 1 ? 0.9 * li / (nl - 1) : 0.0);
  };
  // In drift mode two legend-only entries first say which line style is which.
  auto style_legend = [&](svg::LinePlot& p, const std::string& solid, const std::string& dashed) {
    if (!drift) return;
    p.series.push_back({solid, {}, {}, "#333", false, false, 2.0});
    p.series.push_back({dashed, {}, {}, "#333", false, true, 2.0});
  };
  auto per_module_plots = [&](auto&& fill) {
    std::vector<std::string> figs;
    for (std::size_t mi = 0; mi < grid.modules.size(); ++mi) {
      svg::LinePlot p;
      p.width = 440, p.height = 320;
      p.max_legend = 12;
      fill(p, grid.modules[mi], labels[mi]);
      figs.push_back(svg::line_plot(p));
    }
    return figs;
  };
  page.section("Singular value spectra (log-log)");
  page.paragraph(
      drift
          ? "Solid: base; dashed: fine-tuned. One colour per layer (dark = first, yellow = last). "
            "A straight tail on log-log axes is the power law alpha is fitted to; where the dashed "
            "line "
            "leaves the solid one, fine-tuning changed the spectrum."
          : "One line per layer (dark = first, yellow = last). A straight tail on log-log axes is "
            "the "
            "power law alpha is fitted to; the steeper the head, the more the matrix is dominated "
            "by "
            "a few directions.");
  page.figure_row(
      per_module_plots([&](svg::LinePlot& p, const std::string& module, const std::string& label) {
        p.title = label;
        p.x_label = "rank i";
        p.y_label = "singular value";
        p.x_scale = p.y_scale = svg::Scale::Log;
        style_legend(p, "base", "fine-tuned");
        for (std::size_t li = 0; li < nl; ++li) {
          const auto it = grid.cell.find({grid.layers[li], module});
          if (it == grid.cell.end()) continue;
          const auto* s = by_name[(*it->second)["name"].get<std::string>()];
          if (!s) continue;
          p.series.push_back({"layer " + std::to_string(grid.layers[li]), ranks(s->sigma.size()),
                              s->sigma, layer_color(li)});
          if (drift && !s->sigma_ft.empty())
            p.series.push_back(
                {"", ranks(s->sigma_ft.size()), s->sigma_ft, layer_color(li), false, true});
        }
      }));
  // Matrices outside the layer stack (embeddings, heads).
  {
    svg::LinePlot p;
    p.title = "other matrices";
    p.x_label = "rank i";
    p.y_label = "singular value";
    p.x_scale = p.y_scale = svg::Scale::Log;
    std::size_t k = 0;
    for (const auto& r : rows)
      if (r.value("layer", -1) < 0) {
        const auto* s = by_name[r["name"].get<std::string>()];
        if (!s) continue;
        p.series.push_back({r["name"].get<std::string>(), ranks(s->sigma.size()), s->sigma,
                            svg::palette_color(k)});
        if (drift && !s->sigma_ft.empty())
          p.series.push_back(
              {"", ranks(s->sigma_ft.size()), s->sigma_ft, svg::palette_color(k), false, true});
        ++k;
      }
    if (k) page.svg(svg::line_plot(p));
  }

  // --- Energy curves.
  page.section("Energy curves");
  page.paragraph(
      std::string(
          "Fraction of ||W||_F^2 held by the top-r singular values; the grey lines mark 50%, 90% "
          "and 99% (where a curve crosses them are the energy ranks in the tables).") +
      (drift ? " Dashed: the same for the update dW = W_ft - W. When the dashed curves rise much "
               "faster than "
               "the solid ones, fine-tuning changed the matrices in few directions (a low-rank "
               "update)."
             : ""));
  page.figure_row(
      per_module_plots([&](svg::LinePlot& p, const std::string& module, const std::string& label) {
        p.title = drift ? "W (solid) and dW (dashed): " + label : label;
        p.x_label = "rank r";
        p.y_label = "energy fraction";
        p.y_min = 0, p.y_max = 1;
        for (double q : {0.5, 0.9, 0.99})
          p.ref_lines.push_back({true, q, "", "#aaa"});
        style_legend(p, "W", "dW = W_ft - W");
        for (std::size_t li = 0; li < nl; ++li) {
          const auto it = grid.cell.find({grid.layers[li], module});
          if (it == grid.cell.end()) continue;
          const auto* s = by_name[(*it->second)["name"].get<std::string>()];
          if (!s) continue;
          p.series.push_back({"layer " + std::to_string(grid.layers[li]), ranks(s->sigma.size()),
                              energy(s->sigma), layer_color(li)});
          if (drift && !s->sigma_delta.empty())
            p.series.push_back({"", ranks(s->sigma_delta.size()), energy(s->sigma_delta),
                                layer_color(li), false, true});
        }
      }));

  // --- Heat maps over layers x modules.
  if (!grid.layers.empty()) {
    page.section("Layers x modules");
    std::vector<std::string> figs;
    if (drift) {
      const Grid dg = make_grid(j["drift"]);
      figs.push_back(heat(dg, "rel_delta_fro", "Relative drift ||dW||_F / ||W||_F", "ratio"));
      figs.push_back(heat(dg, "delta_rank90", "Rank holding 90% of dW's energy", "rank"));
      figs.push_back(heat(dg, "intruders", "Intruder dimensions (count)", "count"));
      figs.push_back(heat(dg, "angle_left_max_deg",
                          "Largest principal angle, top-" +
                              std::to_string(j["settings"]["angles_k"].get<int>()) +
                              " left subspaces (deg)",
                          "degrees"));
      figs.push_back(
          heat(dg, "delta_alpha", "Change of alpha (ft - base)", "d-alpha", true, false, true));
    }
    figs.push_back(heat(grid, "alpha", drift ? "alpha of the base" : "Power-law alpha", "alpha"));
    figs.push_back(heat(grid, "stable_rank", "Stable rank ||W||_F^2 / ||W||_2^2", "stable rank"));
    figs.push_back(heat(grid, "mp_spikes", "Spikes above the Marchenko-Pastur edge", "count"));
    page.figure_row(figs);
  }

  // --- Intruders: the matrices that have any, most first (the heat map above shows where).
  if (drift) {
    page.section("Intruder dimensions");
    Json with = Json::array();
    for (const auto& d : j["drift"])
      if (d.value("intruders", 0) > 0) with.push_back(d);
    std::stable_sort(with.begin(), with.end(), [](const Json& a, const Json& b) {
      return a["intruders"].get<int>() > b["intruders"].get<int>();
    });
    if (with.empty())
      page.paragraph("No matrix has an intruder dimension among its top-" +
                     std::to_string(j["settings"]["intruder_k"].get<int>()) +
                     " fine-tuned singular vectors: as full fine-tuning typically looks (LoRA "
                     "tends to create them; Shuttleworth et al. 2024).");
    else
      page.paragraph(std::to_string(with.size()) + " of " + std::to_string(j["drift"].size()) +
                     " matrices have intruder dimensions (full fine-tuning typically shows none; "
                     "LoRA tends to create them, Shuttleworth et al. 2024). Most first:")
          .table(with, {"name", "intruders", "min_best_cos", "rel_delta_fro", "delta_rank90"}, 40);
  }

  // --- Tables.
  page.section("Per-matrix spectrum metrics");
  page.table(rows, {"name", "shape", "method", "spectral_norm", "frobenius_norm", "stable_rank",
                    "effective_rank", "energy_rank50", "energy_rank90", "energy_rank99",
                    "condition_number", "alpha", "alpha_xmin", "alpha_ks_d", "mp_edge_sigma",
                    "mp_spikes"});
  if (drift) {
    page.section("Per-matrix drift");
    page.table(j["drift"],
               {"name", "rel_delta_fro", "delta_stable_rank", "delta_rank50", "delta_rank90",
                "delta_rank99", "angle_left_mean_deg", "angle_left_max_deg", "angle_right_max_deg",
                "intruders", "min_best_cos", "sorsa_dsigma", "sorsa_dd", "alpha_base", "alpha_ft",
                "delta_alpha"});
    if (!j["intruders"].empty()) {
      page.subsection("Intruders");
      page.table(j["intruders"], {"name", "index", "sigma", "best_cos"});
    }
  }
  if (!j["skipped"].empty()) {
    page.section("Skipped");
    page.table(j["skipped"], {"name", "shape", "reason"});
  }
  page.section("Settings");
  page.key_values(j["settings"]);
  page.note(
      "Written by ckptkit " + j["version"].get<std::string>() +
      ". The numbers behind every plot are in report.json and the CSV files beside this page.");
  page.write(path);
}

std::vector<SpectrumPlotData> plots_from_csv(const std::filesystem::path& csv) {
  std::vector<SpectrumPlotData> plots;
  std::ifstream f(csv, std::ios::binary);
  if (!f) return plots;
  std::ostringstream text;
  text << f.rdbuf();
  const auto records = csv_records(text.str());
  const auto num = [](const std::string& t) { return std::strtod(t.c_str(), nullptr); };
  for (std::size_t i = 1; i < records.size(); ++i) {  // name, index, sigma[, sigma_ft, sigma_delta]
    const auto fields = csv_fields(records[i]);
    if (fields.size() < 3) continue;
    if (plots.empty() || plots.back().name != fields[0]) plots.push_back({fields[0], {}, {}, {}});
    auto& p = plots.back();
    p.sigma.push_back(num(fields[2]));
    if (fields.size() > 3 && !fields[3].empty()) p.sigma_ft.push_back(num(fields[3]));
    if (fields.size() > 4 && !fields[4].empty()) p.sigma_delta.push_back(num(fields[4]));
  }
  return plots;
}

}  // namespace ckpt
