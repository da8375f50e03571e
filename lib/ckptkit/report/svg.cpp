#include "ckptkit/report/svg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "ckptkit/report/html.hpp"

namespace ckpt::svg {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr const char* kFont = "font-family=\"sans-serif\"";

/// Fixed-precision coordinate so the SVG text is deterministic and compact.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string text_el(double x, double y, std::string_view s, const char* anchor = "middle",
                    int size = 11, const std::string& extra = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + kFont + " font-size=\"" +
         std::to_string(size) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" + escape_xml(s) +
         "</text>\n";
}

/// Maps data values to pixels along one axis (log axes work in log10 space).
struct Axis {
  Scale scale = Scale::Linear;
  double lo = 0, hi = 1;      // in transformed space
  double p0 = 0, p1 = 1;      // pixel positions of lo and hi
  std::vector<double> ticks;  // data values

  double t(double v) const { return scale == Scale::Log ? std::log10(v) : v; }
  bool valid(double v) const { return std::isfinite(v) && (scale == Scale::Linear || v > 0); }
  double px(double v) const { return p0 + (t(v) - lo) / (hi - lo) * (p1 - p0); }
};

/// Chooses the range and ticks of an axis from the data extent and optional limits.
Axis make_axis(Scale scale, double dmin, double dmax, std::optional<double> lim_lo,
               std::optional<double> lim_hi) {
  Axis a;
  a.scale = scale;
  if (!std::isfinite(dmin) || !std::isfinite(dmax)) {
    dmin = scale == Scale::Log ? 1 : 0;
    dmax = scale == Scale::Log ? 10 : 1;
  }
  if (lim_lo && a.valid(*lim_lo)) dmin = *lim_lo;
  if (lim_hi && a.valid(*lim_hi)) dmax = *lim_hi;
  if (scale == Scale::Log) {
    double lo = std::log10(dmin), hi = std::log10(dmax);
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    // A small margin, not whole decades: data spanning 1..384 should not get an axis to 1000.
    const double pad = 0.03 * (hi - lo);
    if (!lim_lo) lo -= pad;
    if (!lim_hi) hi += pad;
    a.lo = lo, a.hi = hi;
    // Decade ticks; thinned when there are many decades, 2 and 5 added when there are few.
    const int decades = static_cast<int>(std::ceil(hi) - std::floor(lo));
    const int step = std::max(1, decades / 8);
    for (int e = static_cast<int>(std::floor(lo)); e <= static_cast<int>(std::ceil(hi)); ++e) {
      if (e % step != 0) continue;
      for (double m : decades <= 2 ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, e);
        const double lv = std::log10(v);
        if (lv >= lo - 1e-9 && lv <= hi + 1e-9) a.ticks.push_back(v);
      }
    }
  } else {
    if (dmax - dmin < 1e-300) dmin -= 0.5, dmax += 0.5;
    a.ticks = nice_ticks(dmin, dmax, 6);
    a.lo = lim_lo ? dmin : std::min(dmin, a.ticks.front());
    a.hi = lim_hi ? dmax : std::max(dmax, a.ticks.back());
    std::erase_if(a.ticks, [&](double v) { return v < a.lo - 1e-12 || v > a.hi + 1e-12; });
  }
  return a;
}

std::string svg_open(int w, int h) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(w) + "\" height=\"" +
         std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " + std::to_string(h) +
         "\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

/// Axes frame, grid lines, ticks, labels and the title of a plot area.
std::string draw_axes(const Axis& xa, const Axis& ya, double left, double top, double right,
                      double bottom, const std::string& title, const std::string& xl,
                      const std::string& yl, bool x_ticks = true) {
  std::string s;
  for (double v : ya.ticks) {
    const double y = ya.px(v);
    s += "<line x1=\"" + num(left) + "\" y1=\"" + num(y) + "\" x2=\"" + num(right) + "\" y2=\"" +
         num(y) + "\" stroke=\"#e5e5e5\"/>\n";
    s += text_el(left - 6, y + 4, format_tick(v), "end", 10);
  }
  if (x_ticks) {
    for (double v : xa.ticks) {
      const double x = xa.px(v);
      s += "<line x1=\"" + num(x) + "\" y1=\"" + num(top) + "\" x2=\"" + num(x) + "\" y2=\"" +
           num(bottom) + "\" stroke=\"#e5e5e5\"/>\n";
      s += text_el(x, bottom + 15, format_tick(v), "middle", 10);
    }
  }
  s += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(right - left) +
       "\" height=\"" + num(bottom - top) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  if (!title.empty())
    s += text_el((left + right) / 2, 20, title, "middle", 14, " font-weight=\"bold\"");
  if (!xl.empty()) s += text_el((left + right) / 2, bottom + 34, xl, "middle", 12);
  if (!yl.empty()) {
    const double cx = 14, cy = (top + bottom) / 2;
    s += text_el(cx, cy, yl, "middle", 12,
                 " transform=\"rotate(-90 " + num(cx) + " " + num(cy) + ")\"");
  }
  return s;
}

struct LegendEntry {
  std::string label, color;
  bool dashed = false;
};

std::string legend_block(const std::vector<LegendEntry>& entries, double x, double y,
                         std::size_t max_entries, bool lines) {
  std::string s;
  std::size_t shown = 0;
  for (const auto& [label, color, dashed] : entries) {
    if (shown == max_entries) {
      s += text_el(x + 22, y + 4, "… (" + std::to_string(entries.size() - shown) + " more)",
                   "start", 10);
      break;
    }
    if (lines)
      s += "<line x1=\"" + num(x) + "\" y1=\"" + num(y) + "\" x2=\"" + num(x + 16) + "\" y2=\"" +
           num(y) + "\" stroke=\"" + color + "\" stroke-width=\"2.5\"" +
           (dashed ? " stroke-dasharray=\"4 2\"" : "") + "/>\n";
    else
      s += "<rect x=\"" + num(x + 2) + "\" y=\"" + num(y - 5) +
           "\" width=\"12\" height=\"10\" fill=\"" + color + "\"/>\n";
    std::string l = label.size() > 22 ? label.substr(0, 21) + "…" : label;
    s += text_el(x + 22, y + 4, l, "start", 10);
    y += 15;
    ++shown;
  }
  return s;
}

}  // namespace

std::string escape_xml(std::string_view text) {
  return html_escape(text);
}

std::string palette_color(std::size_t i) {
  static const char* kTab10[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kTab10[i % 10];
}

namespace {

/// The colour at t in [0, 1] along `n` evenly spaced RGB anchors, linearly interpolated (close
/// enough for a report); grey for a non-finite t.
std::string ramp_color(const int (*anchors)[3], int n, double t) {
  if (!std::isfinite(t)) return "#d0d0d0";
  t = std::clamp(t, 0.0, 1.0) * (n - 1);
  const int i = std::min(n - 2, static_cast<int>(t));
  const double f = t - i;
  char buf[8];
  int rgb[3];
  for (int c = 0; c < 3; ++c)
    rgb[c] = static_cast<int>(std::lround(anchors[i][c] + f * (anchors[i + 1][c] - anchors[i][c])));
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return buf;
}

}  // namespace

std::string sequential_color(double t) {
  // Viridis sampled at 9 points.
  static const int kViridis[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                     {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                     {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  return ramp_color(kViridis, 9, t);
}

std::string diverging_color(double t) {
  // Blue (#2166ac) - white - red (#b2182b), as ColorBrewer's RdBu ends.
  static const int kRdBu[3][3] = {{33, 102, 172}, {247, 247, 247}, {178, 24, 43}};
  return ramp_color(kRdBu, 3, t);
}

std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, count);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9) * step;
  for (double v = first; v <= hi + step * 0.999; v += step) {
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    if (ticks.size() > 50) break;
  }
  return ticks;
}

std::string format_tick(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (v == 0)
    return "0";
  else if (a >= 1e-3 && a < 1e5)
    std::snprintf(buf, sizeof buf, "%.4g", v);
  else
    std::snprintf(buf, sizeof buf, "%.2g", v);
  return buf;
}

std::string line_plot(const LinePlot& plot) {
  const bool any_label =
      plot.legend && std::any_of(plot.series.begin(), plot.series.end(),
                                 [](const Series& s) { return !s.label.empty(); });
  // The legend is as wide as its longest (truncated) label.
  std::size_t longest = 0;
  for (const auto& se : plot.series)
    longest = std::max(longest, std::min<std::size_t>(se.label.size(), 22));
  const double legend_w = std::clamp(40.0 + 6.0 * static_cast<double>(longest), 80.0, 170.0);
  const double left = 70, top = 34, right = plot.width - (any_label ? legend_w : 16.0),
               bottom = plot.height - 46;
  // Data extent over the points each axis can show.
  Axis probe_x, probe_y;
  probe_x.scale = plot.x_scale, probe_y.scale = plot.y_scale;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : plot.series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!probe_x.valid(s.x[i]) || !probe_y.valid(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  for (const auto& r : plot.ref_lines) {
    if (r.horizontal && probe_y.valid(r.value))
      ymin = std::min(ymin, r.value), ymax = std::max(ymax, r.value);
    if (!r.horizontal && probe_x.valid(r.value))
      xmin = std::min(xmin, r.value), xmax = std::max(xmax, r.value);
  }
  Axis xa = make_axis(plot.x_scale, xmin, xmax, plot.x_min, plot.x_max);
  Axis ya = make_axis(plot.y_scale, ymin, ymax, plot.y_min, plot.y_max);
  xa.p0 = left, xa.p1 = right, ya.p0 = bottom, ya.p1 = top;

  std::string s = svg_open(plot.width, plot.height);
  s += draw_axes(xa, ya, left, top, right, bottom, plot.title, plot.x_label, plot.y_label);
  // Clip ids are global in an HTML page: derive one from the content so plots never collide.
  std::uint64_t h = 1469598103934665603ull;
  for (char c : plot.title + plot.y_label)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  for (const auto& se : plot.series)
    for (double v : se.y) {
      std::uint64_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  char cid[32];
  std::snprintf(cid, sizeof cid, "clip%016llx", static_cast<unsigned long long>(h));
  s += std::string("<defs><clipPath id=\"") + cid + "\"><rect x=\"" + num(left) + "\" y=\"" +
       num(top) + "\" width=\"" + num(right - left) + "\" height=\"" + num(bottom - top) +
       "\"/></clipPath></defs>\n";
  s += std::string("<g clip-path=\"url(#") + cid + ")\">\n";
  std::vector<LegendEntry> legend;
  for (std::size_t k = 0; k < plot.series.size(); ++k) {
    const Series& se = plot.series[k];
    const std::string color = se.color.empty() ? palette_color(k) : se.color;
    if (!se.label.empty()) legend.push_back({se.label, color, se.dashed});
    std::string d;
    bool pen = false;
    std::string dots;
    for (std::size_t i = 0; i < std::min(se.x.size(), se.y.size()); ++i) {
      if (!xa.valid(se.x[i]) || !ya.valid(se.y[i])) {
        pen = false;
        continue;
      }
      const double px = xa.px(se.x[i]), py = ya.px(se.y[i]);
      d += (pen ? "L" : "M") + num(px) + " " + num(py);
      pen = true;
      if (se.markers)
        dots += "<circle cx=\"" + num(px) + "\" cy=\"" + num(py) + "\" r=\"2.5\" fill=\"" + color +
                "\"/>\n";
    }
    if (!d.empty())
      s += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"" +
           num(se.width) + "\"" + (se.dashed ? " stroke-dasharray=\"5 3\"" : "") +
           " stroke-linejoin=\"round\"/>\n";
    s += dots;
  }
  for (const auto& r : plot.ref_lines) {
    if (r.horizontal ? !ya.valid(r.value) : !xa.valid(r.value)) continue;
    const double x1 = r.horizontal ? left : xa.px(r.value), x2 = r.horizontal ? right : x1;
    const double y1 = r.horizontal ? ya.px(r.value) : top, y2 = r.horizontal ? y1 : bottom;
    s += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
         num(y2) + "\" stroke=\"" + r.color + "\" stroke-dasharray=\"6 4\"/>\n";
    if (!r.label.empty())
      s += r.horizontal ? text_el(right - 4, y1 - 4, r.label, "end", 10)
                        : text_el(x1 + 4, top + 12, r.label, "start", 10);
  }
  s += "</g>\n";
  if (any_label) s += legend_block(legend, right + 12, top + 8, plot.max_legend, true);
  s += "</svg>\n";
  return s;
}

std::string heat_map(const HeatMap& map) {
  const std::size_t rows = map.row_labels.size(), cols = map.col_labels.size();
  std::size_t max_row = 0, max_col = 0;
  for (const auto& l : map.row_labels)
    max_row = std::max(max_row, l.size());
  for (const auto& l : map.col_labels)
    max_col = std::max(max_col, l.size());
  const int cw =
      map.cell_width > 0 ? map.cell_width : std::clamp(640 / std::max<int>(1, cols), 16, 64);
  const int ch =
      map.cell_height > 0 ? map.cell_height : std::clamp(420 / std::max<int>(1, rows), 12, 28);
  const double left = 12 + 6.5 * std::min<std::size_t>(max_row, 40);
  const bool rotate = max_col * 6.5 > cw;
  const double top = 40 + (rotate ? 5.0 * std::min<std::size_t>(max_col, 30) : 14.0);
  const double grid_w = cw * static_cast<double>(cols), grid_h = ch * static_cast<double>(rows);
  const int width = static_cast<int>(left + grid_w + 110);
  const int height = static_cast<int>(std::max(top + grid_h + 20, top + 180)) +
                     (map.diverging ? 16 : 0);  // room for the "clipped at" caption

  auto tf = [&](double v) { return map.log_color ? (v > 0 ? std::log10(v) : kNaN) : v; };
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& row : map.values)
    for (double v : row) {
      const double t = tf(v);
      if (std::isfinite(t)) lo = std::min(lo, t), hi = std::max(hi, t);
    }
  if (map.diverging) {
    // Symmetric around 0 at the 95th percentile of |v|: an outlier is clipped, not the scale.
    std::vector<double> mags;
    for (const auto& row : map.values)
      for (double v : row)
        if (std::isfinite(v)) mags.push_back(std::abs(v));
    std::sort(mags.begin(), mags.end());
    const double m = mags.empty() ? 1.0 : mags[std::min(mags.size() - 1, mags.size() * 95 / 100)];
    hi = m > 0 ? m : 1.0;
    lo = -hi;
  }
  if (map.v_min) lo = tf(*map.v_min);
  if (map.v_max) hi = tf(*map.v_max);
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-300) hi = lo + 1;
  auto frac = [&](double v) { return std::clamp((tf(v) - lo) / (hi - lo), 0.0, 1.0); };
  const auto color = [&](double f) {
    return map.diverging ? diverging_color(f) : sequential_color(f);
  };

  std::string s = svg_open(width, height);
  if (!map.title.empty())
    s += text_el(width / 2.0, 20, map.title, "middle", 14, " font-weight=\"bold\"");
  for (std::size_t c = 0; c < cols; ++c) {
    const double x = left + (c + 0.5) * cw, y = top - 6;
    s += rotate ? text_el(x, y, map.col_labels[c], "start", 10,
                          " transform=\"rotate(-45 " + num(x) + " " + num(y) + ")\"")
                : text_el(x, y, map.col_labels[c], "middle", 10);
  }
  for (std::size_t r = 0; r < rows; ++r) {
    s += text_el(left - 6, top + (r + 0.5) * ch + 4, map.row_labels[r], "end", 10);
    for (std::size_t c = 0; c < cols; ++c) {
      const double v = r < map.values.size() && c < map.values[r].size() ? map.values[r][c] : kNaN;
      const double f = frac(v);
      s += "<rect x=\"" + num(left + c * cw) + "\" y=\"" + num(top + r * ch) + "\" width=\"" +
           std::to_string(cw) + "\" height=\"" + std::to_string(ch) + "\" fill=\"" +
           (std::isfinite(v) ? color(f) : color(kNaN)) +
           "\" stroke=\"white\" stroke-width=\"0.5\"><title>" +
           escape_xml(map.row_labels[r] + " / " + map.col_labels[c] + ": " + format_tick(v)) +
           "</title></rect>\n";
      if (map.annotate && std::isfinite(v) && ch >= 12 && cw >= 28)
        s += text_el(left + (c + 0.5) * cw, top + (r + 0.5) * ch + 3.5, format_tick(v), "middle", 9,
                     std::string(" fill=\"") +
                         ((map.diverging ? std::abs(f - 0.5) < 0.3 : f > 0.6) ? "black" : "white") +
                         "\"");
    }
  }
  // Colour bar: 32 steps with min/mid/max ticks in data units.
  const double bx = left + grid_w + 22, by = top, bh = std::max(120.0, std::min(grid_h, 260.0));
  for (int i = 0; i < 32; ++i)
    s += "<rect x=\"" + num(bx) + "\" y=\"" + num(by + bh * (31 - i) / 32.0) +
         "\" width=\"14\" height=\"" + num(bh / 32.0 + 0.5) + "\" fill=\"" +
         color((i + 0.5) / 32.0) + "\"/>\n";
  s += "<rect x=\"" + num(bx) + "\" y=\"" + num(by) + "\" width=\"14\" height=\"" + num(bh) +
       "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (double f : {0.0, 0.5, 1.0}) {
    const double t = lo + f * (hi - lo);
    const double v = map.log_color ? std::pow(10.0, t) : t;
    s += text_el(bx + 18, by + bh * (1 - f) + 4, format_tick(v), "start", 10);
  }
  if (!map.color_label.empty()) {
    const double cx = bx + 7, cy = by + bh + 16;
    s += text_el(cx, cy, map.color_label, "middle", 10);
  }
  if (map.diverging)
    s += text_el(bx + 7, by + bh + 30, "(clipped at ±" + format_tick(hi) + ")", "middle", 9);
  s += "</svg>\n";
  return s;
}

std::string bar_chart(const BarChart& chart) {
  const bool any_label = chart.legend && chart.series.size() > 1;
  std::size_t max_cat = 0;
  for (const auto& c : chart.categories)
    max_cat = std::max(max_cat, c.size());
  const double left = 70, top = 34, right = chart.width - (any_label ? 150.0 : 16.0);
  const double bottom =
      chart.height - (chart.rotate_labels ? 30 + 5.0 * std::min<std::size_t>(max_cat, 30) : 46.0);
  Axis probe;
  probe.scale = chart.y_scale;
  double ymin = chart.y_scale == Scale::Linear ? 0.0 : INFINITY, ymax = -INFINITY;
  for (const auto& se : chart.series)
    for (double v : se.values)
      if (probe.valid(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  if (chart.integer_y && chart.y_scale == Scale::Linear && !chart.y_max)
    ymax = std::max(ymax, 1.0);  // a count axis reaches at least 1
  Axis ya = make_axis(chart.y_scale, ymin, ymax, chart.y_min, chart.y_max);
  if (chart.integer_y)
    std::erase_if(ya.ticks, [](double v) { return std::abs(v - std::round(v)) > 1e-9; });
  ya.p0 = bottom, ya.p1 = top;
  Axis xa;  // unused ticks: categories are labelled below
  xa.p0 = left, xa.p1 = right;

  std::string s = svg_open(chart.width, chart.height);
  s += draw_axes(xa, ya, left, top, right, bottom, chart.title,
                 chart.rotate_labels ? "" : chart.x_label, chart.y_label, false);
  const std::size_t n = chart.categories.size(), k = std::max<std::size_t>(1, chart.series.size());
  const double group = (right - left) / std::max<std::size_t>(1, n);
  const double bar = group * 0.8 / k;
  const double base = chart.y_scale == Scale::Log ? ya.px(std::pow(10.0, ya.lo))
                                                  : ya.px(std::clamp(0.0, ya.lo, ya.hi));
  std::vector<LegendEntry> legend;
  for (std::size_t j = 0; j < chart.series.size(); ++j) {
    const auto& se = chart.series[j];
    const std::string color = se.color.empty() ? palette_color(j) : se.color;
    legend.push_back({se.label, color, false});
    for (std::size_t i = 0; i < std::min(n, se.values.size()); ++i) {
      const double v = se.values[i];
      if (!ya.valid(v)) continue;
      const double y = ya.px(v);
      const double x = left + i * group + group * 0.1 + j * bar;
      s += "<rect x=\"" + num(x) + "\" y=\"" + num(std::min(y, base)) + "\" width=\"" +
           num(std::max(1.0, bar - 1)) + "\" height=\"" + num(std::abs(base - y)) + "\" fill=\"" +
           color + "\"><title>" + escape_xml(chart.categories[i] + ": " + format_tick(v)) +
           "</title></rect>\n";
    }
  }
  // Category labels: thinned so that they do not overlap.
  const std::size_t every =
      chart.rotate_labels
          ? std::max<std::size_t>(1, static_cast<std::size_t>(12 / group) + 1)
          : std::max<std::size_t>(1, static_cast<std::size_t>((max_cat * 6.5 + 4) / group) + 1);
  for (std::size_t i = 0; i < n; i += every) {
    const double x = left + (i + 0.5) * group, y = bottom + 14;
    s += chart.rotate_labels ? text_el(x, y, chart.categories[i], "end", 10,
                                       " transform=\"rotate(-45 " + num(x) + " " + num(y) + ")\"")
                             : text_el(x, y, chart.categories[i], "middle", 10);
  }
  if (chart.rotate_labels && !chart.x_label.empty())
    s += text_el((left + right) / 2, chart.height - 6, chart.x_label, "middle", 12);
  if (any_label) s += legend_block(legend, right + 12, top + 8, 16, false);
  s += "</svg>\n";
  return s;
}

}  // namespace ckpt::svg
