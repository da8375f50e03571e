// Report writers: CSV quoting, Markdown tables, HTML page, SVG plots.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "ckptkit/report/csv.hpp"
#include "ckptkit/report/html.hpp"
#include "ckptkit/report/markdown.hpp"
#include "ckptkit/report/svg.hpp"

using namespace ckpt;
using Json = nlohmann::ordered_json;

namespace {

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("csv quotes fields with commas, quotes and newlines") {
  CHECK(csv_quote("plain") == "plain");
  CHECK(csv_quote("a,b") == "\"a,b\"");
  CHECK(csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_quote("two\nlines") == "\"two\nlines\"");
  CsvWriter w({"name", "value", "flag"});
  w.row({"x,y", 0.5, true});
  w.row({Json(), 3, "q\""});
  CHECK(w.str() == "name,value,flag\n\"x,y\",0.5,true\n,3,\"q\"\"\"\n");
}

TEST_CASE("csv from JSON rows picks columns and leaves missing ones empty") {
  Json rows = Json::array({{{"a", 1}, {"b", "s"}}, {{"a", 2.25}}});
  const auto w = CsvWriter::from_rows(rows);
  CHECK(w.str() == "a,b\n1,s\n2.25,\n");
  CHECK_THROWS(CsvWriter({"a"}).row({1, 2}));
}

TEST_CASE("markdown table escapes pipes and right-aligns numbers") {
  Json rows = Json::array({{{"name", "a|b"}, {"v", 1.23456789}}, {{"name", "c"}, {"v", 10}}});
  const std::string t = markdown_table(rows);
  INFO(t);
  CHECK(t.find("a\\|b") != std::string::npos);
  CHECK(t.find("1.235") != std::string::npos);
  CHECK(t.find("---:") != std::string::npos);  // numeric column right-aligned
  CHECK(count(t, "\n") == 4);                  // header, rule, 2 rows
  // Every line has the same number of unescaped column separators.
  CHECK(count(t, "|") - count(t, "\\|") == 4 * 3);
}

TEST_CASE("html page is self-contained and escapes text") {
  HtmlPage page("Report <1>");
  page.section("S & T").paragraph("x < y").table(Json::array({{{"k", "<b>"}, {"n", 2.5}}}));
  svg::BarChart chart;
  chart.title = "t";
  chart.categories = {"a"};
  chart.series = {{"s", {1.0}, ""}};
  page.svg(svg::bar_chart(chart), "cap");
  const std::string html = page.str();
  CHECK(html.find("<title>Report &lt;1&gt;</title>") != std::string::npos);
  CHECK(html.find("S &amp; T") != std::string::npos);
  CHECK(html.find("&lt;b&gt;") != std::string::npos);
  CHECK(html.find("<td class=\"n\">2.5</td>") != std::string::npos);
  // No network: the only URL is the SVG namespace.
  CHECK(count(html, "http") == count(html, "http://www.w3.org/2000/svg"));
  CHECK(html.find("<script") == std::string::npos);
}

TEST_CASE("html table truncates long tables with a note") {
  Json rows = Json::array();
  for (int i = 0; i < 10; ++i)
    rows.push_back({{"i", i}});
  HtmlPage page("t");
  page.table(rows, {"i"}, 3);
  const std::string html = page.str();
  CHECK(count(html, "<tr>") == 4);
  CHECK(html.find("7 more rows") != std::string::npos);
}

TEST_CASE("svg line plot: balanced markup, log ticks are decades, legend entries") {
  svg::LinePlot p;
  p.title = "spectra";
  p.x_scale = p.y_scale = svg::Scale::Log;
  std::vector<double> x, y;
  for (int i = 1; i <= 1000; ++i)
    x.push_back(i), y.push_back(1000.0 / i);
  p.series.push_back({.label = "a & b", .x = x, .y = y, .color = ""});
  p.series.push_back(
      {.label = "zero/neg skipped", .x = {1, 2, 3}, .y = {0.0, -1.0, 5.0}, .color = ""});
  const std::string s = svg::line_plot(p);
  CHECK(s.rfind("<svg", 0) == 0);
  CHECK(count(s, "<svg") == count(s, "</svg>"));
  CHECK(count(s, "<text") == count(s, "</text>"));
  CHECK(s.find(">1000<") != std::string::npos);  // decade tick label
  CHECK(s.find("a &amp; b") != std::string::npos);
  CHECK(s.find("nan") == std::string::npos);
  CHECK(s.find("inf") == std::string::npos);
}

TEST_CASE("svg nice ticks cover the range with 1-2-5 steps") {
  const auto t = svg::nice_ticks(0.13, 0.87, 5);
  REQUIRE(t.size() >= 3);
  CHECK(t.front() <= 0.13);
  CHECK(t.back() >= 0.87 - 1e-12);
  const double step = t[1] - t[0];
  const double mant = step / std::pow(10.0, std::floor(std::log10(step)));
  CHECK((std::abs(mant - 1) < 1e-9 || std::abs(mant - 2) < 1e-9 || std::abs(mant - 2.5) < 1e-9 ||
         std::abs(mant - 5) < 1e-9));
}

TEST_CASE("svg heat map: one cell per value, NaN grey, colour bar labels") {
  svg::HeatMap h;
  h.title = "drift";
  h.row_labels = {"0", "1"};
  h.col_labels = {"q_proj", "k_proj", "v_proj"};
  h.values = {{0.1, 0.2, NAN}, {0.3, 0.4, 0.5}};
  h.color_label = "rel";
  const std::string s = svg::heat_map(h);
  CHECK(count(s, "<title>") == 6);
  CHECK(s.find("#d0d0d0") != std::string::npos);  // the NaN cell
  CHECK(s.find(svg::sequential_color(0)) != std::string::npos);
  CHECK(s.find(svg::sequential_color(1)) != std::string::npos);
  CHECK(count(s, "<text") == count(s, "</text>"));
}

TEST_CASE("svg bar chart has one rect per finite value") {
  svg::BarChart b;
  b.categories = {"a", "b", "c"};
  b.series = {{"one", {1, 2, NAN}, ""}, {"two", {0, 3, 4}, ""}};
  const std::string s = svg::bar_chart(b);
  CHECK(count(s, "<title>") == 5);
  CHECK(svg::escape_xml("<'&\">") == "&lt;&#39;&amp;&quot;&gt;");
}

TEST_CASE("svg bar chart of counts labels whole numbers only") {
  // Intruder counts of 0 and 1 used to get ticks 0, 0.2, ..., 1: fractions of a count.
  svg::BarChart b;
  b.categories = {"a", "b", "c"};
  b.series = {{"n", {0, 1, 0}, ""}};
  const auto has_tick = [](const std::string& s, const std::string& label) {
    return s.find(">" + label + "</text>") != std::string::npos;
  };
  CHECK(has_tick(svg::bar_chart(b), "0.2"));  // the default axis
  b.integer_y = true;
  const std::string s = svg::bar_chart(b);
  CHECK_FALSE(has_tick(s, "0.2"));
  CHECK_FALSE(has_tick(s, "0.5"));
  CHECK(has_tick(s, "0"));
  CHECK(has_tick(s, "1"));
  b.series = {{"n", {0, 0, 0}, ""}};  // all zero: still an axis up to 1
  CHECK(has_tick(svg::bar_chart(b), "1"));
}
