// runtime/report_compare.cpp — the HTML page of `opennpu bench A --compare B --html FILE`: two
// models (typically float32 and its int8 quantization) side by side. Self-contained (inline
// styles, no script, no network). Reads the JSON object bench --compare prints, so the page and
// the JSON cannot disagree. See report.h.
#include <algorithm>

#include <fmt/format.h>

#include "runtime/report.h"

namespace opennpu::report {

namespace {

std::string num(const nlohmann::json& j, const char* k, const char* f) {
  if (!j.contains(k) || !j[k].is_number()) return "-";
  return fmt::format(fmt::runtime(f), j[k].get<double>());
}

}  // namespace

std::string compare_html(const nlohmann::json& c) {
  const auto& a = c["a"];
  const auto& b = c["b"];
  const auto& acc = c["accuracy"];
  std::string o;
  o += "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>opennpu: ";
  o += html_escape(c["model"].get<std::string>()) + " vs " + html_escape(c["compare"].get<std::string>());
  o += "</title>\n<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}"
       "table{border-collapse:collapse;margin:12px 0}td,th{padding:4px 12px;border-bottom:1px solid #ddd;"
       "text-align:right}td:first-child,th:first-child{text-align:left}.bar{display:inline-block;height:12px;"
       "background:#4a7fd6;vertical-align:middle}.b{background:#e0883c}.note{color:#666;font-size:90%}"
       "</style></head><body>\n";
  o += fmt::format("<h1>{} vs {}</h1>\n", html_escape(a["model"].get<std::string>()),
                   html_escape(b["model"].get<std::string>()));
  o += fmt::format(
      "<h2>Accuracy</h2><p>B against A on {} seeded inputs (output <code>{}</code>): cosine similarity "
      "min <b>{:.5f}</b>, mean {:.5f}; top-1 agreement <b>{}/{}</b> ({:.1f}%).</p>\n",
      acc["samples"].get<int>(), html_escape(acc["output"].get<std::string>()), acc["cosine_min"].get<double>(),
      acc["cosine_mean"].get<double>(), acc["top1_agree"].get<int64_t>(), acc["top1_rows"].get<int64_t>(),
      100 * acc["top1_agreement"].get<double>());
  o += "<h2>Cost</h2><table><tr><th></th><th>A</th><th>B</th><th>A / B</th><th></th></tr>\n";
  struct Row {
    const char* label;
    const char* key;
    const char* fmt;
  };
  const Row rows[] = {{"CPU median latency (ms, measured)", "cpu_median_ms", "{:.3f}"},
                      {"NPU latency (ms, simulated)", "npu_latency_ms", "{:.3f}"},
                      {"NPU energy (mJ, simulated)", "npu_energy_mj", "{:.4f}"},
                      {"NPU DRAM traffic (MB)", "npu_dram_mb", "{:.2f}"},
                      {"model file (MB)", "file_mb", "{:.2f}"}};
  for (const Row& r : rows) {
    if (!a.contains(r.key) || !b.contains(r.key)) continue;
    double x = a[r.key].get<double>(), y = b[r.key].get<double>();
    double mx = std::max(x, y);
    int wa = mx > 0 ? static_cast<int>(200 * x / mx) : 0, wb = mx > 0 ? static_cast<int>(200 * y / mx) : 0;
    o += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\"><span class=\"bar\" "
        "style=\"width:{}px\"></span><br><span class=\"bar b\" style=\"width:{}px\"></span></td></tr>\n",
        r.label, num(a, r.key, r.fmt), num(b, r.key, r.fmt), y > 0 ? fmt::format("{:.2f}x", x / y) : "-", wa, wb);
  }
  if (a.contains("nodes_on_npu"))
    o += fmt::format("<tr><td>nodes on the NPU ({})</td><td>{}/{}</td><td>{}/{}</td><td></td><td></td></tr>\n",
                     html_escape(a["hardware"].get<std::string>()), a["nodes_on_npu"].get<int>(),
                     a["nodes"].get<int64_t>(), b["nodes_on_npu"].get<int>(), b["nodes"].get<int64_t>());
  o += "</table>\n<p class=\"note\">Blue: A, orange: B. CPU times are measured on this machine; NPU figures come "
       "from the simulator. The accuracy inputs are seeded standard-normal noise (docs/int8.md says what that "
       "means for models with random weights).</p>\n</body></html>\n";
  return o;
}

}  // namespace opennpu::report
