// Small, dependency-free SVG plotting for ckptkit's HTML reports: line plots (linear or log axes,
// several series with a legend), heat maps (colour scale, row/column labels) and bar charts.
// Every function returns one self-contained <svg> element as a string, ready to embed inline in
// an HTML page (see html.hpp). Output is deterministic (fixed number formatting), so reports are
// byte-identical across runs. Non-finite values (and values <= 0 on a log axis) are skipped.
//
// Example:
//   svg::LinePlot p;
//   p.title = "Spectrum"; p.x_scale = p.y_scale = svg::Scale::Log;
//   p.series.push_back({"layer 0", xs, ys});
//   std::string fig = svg::line_plot(p);
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt::svg {

enum class Scale { Linear, Log };

/// One line of a line plot. Points with a non-finite coordinate break the line.
struct Series {
  std::string label;      ///< legend text (empty: not in the legend)
  std::vector<double> x;  ///< same length as y
  std::vector<double> y;
  std::string color;     ///< CSS colour; empty: palette colour by series index
  bool markers = false;  ///< draw a small dot at each point
  bool dashed = false;
  double width = 1.5;  ///< stroke width in px
};

/// A horizontal or vertical reference line (e.g. a threshold) drawn dashed and labelled.
struct RefLine {
  bool horizontal = true;
  double value = 0;
  std::string label;
  std::string color = "#888";
};

struct LinePlot {
  std::string title;
  std::string x_label, y_label;
  Scale x_scale = Scale::Linear, y_scale = Scale::Linear;
  std::vector<Series> series;
  std::vector<RefLine> ref_lines;
  std::optional<double> x_min, x_max, y_min, y_max;  ///< axis limits (default: data range)
  int width = 640, height = 400;
  bool legend = true;           ///< legend on the right when any series has a label
  std::size_t max_legend = 16;  ///< more series than this: legend shows the first ones and "…"
};

/// A grid of values: rows × columns, coloured by a sequential scale (viridis-like).
struct HeatMap {
  std::string title;
  std::vector<std::string> row_labels;      ///< one per row
  std::vector<std::string> col_labels;      ///< one per column
  std::vector<std::vector<double>> values;  ///< values[row][col]; NaN: empty (grey) cell
  std::string color_label;                  ///< caption of the colour bar
  bool log_color = false;                   ///< colour by log10(value) (values > 0)
  std::optional<double> v_min, v_max;       ///< colour limits (default: data range)
  bool annotate = false;                    ///< print each value in its cell
  /// Signed values: a blue-white-red scale centred on 0 with limits ±(the 95th percentile of
  /// |value|), so one outlier does not wash out every other cell; cells beyond are clipped (and
  /// the colour bar says so).
  bool diverging = false;
  int cell_width = 0, cell_height = 0;  ///< 0: chosen from the grid size
};

/// Grouped bars: one group per category, one bar per series in each group.
struct BarSeries {
  std::string label;
  std::vector<double> values;  ///< one per category
  std::string color;           ///< empty: palette colour by series index
};

struct BarChart {
  std::string title;
  std::string x_label, y_label;
  std::vector<std::string> categories;
  std::vector<BarSeries> series;
  Scale y_scale = Scale::Linear;
  std::optional<double> y_min, y_max;
  int width = 640, height = 360;
  bool legend = true;
  bool rotate_labels = false;  ///< category labels at 45° (long or many categories)
  bool integer_y = false;      ///< counts: whole-number y ticks only
};

/// Renders a line plot as an <svg> element.
std::string line_plot(const LinePlot& plot);
/// Renders a heat map with a colour bar as an <svg> element.
std::string heat_map(const HeatMap& map);
/// Renders a grouped bar chart as an <svg> element.
std::string bar_chart(const BarChart& chart);

/// The i-th colour of a 10-colour categorical palette (Tableau 10), cycling.
std::string palette_color(std::size_t i);
/// The sequential colour for t in [0, 1] (viridis, interpolated between anchor colours).
std::string sequential_color(double t);
/// The diverging colour for t in [0, 1]: blue (0), white (0.5), red (1).
std::string diverging_color(double t);
/// Escapes &, <, >, " and ' for XML text and attributes.
std::string escape_xml(std::string_view text);
/// About `count` "nice" tick values (1, 2, 5 × 10^k steps) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count = 5);
/// Short tick label: "0.5", "1e-06", "1200", "3.2e+04".
std::string format_tick(double v);

}  // namespace ckpt::svg
