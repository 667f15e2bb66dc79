// The self-contained HTML report: summary, timeline (inline SVG), roofline (inline SVG), sortable
// per-layer table and device placement. No network resource of any kind: styles, script and
// graphics are inline, fonts are the system's. Every name from the model goes through
// html_escape. See report.h.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>

#include <fmt/format.h>

#include "runtime/report.h"

namespace opennpu::report {

namespace {

using Out = std::string;

template <typename... Args>
void put(Out& o, fmt::format_string<Args...> f, Args&&... args) {
  fmt::format_to(std::back_inserter(o), f, std::forward<Args>(args)...);
}

// A number for people: at most `sig` significant digits, no exponent for everyday magnitudes.
std::string num(double v, int sig = 3) {
  if (!std::isfinite(v)) return "-";
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e15 || a < 1e-4) return fmt::format("{:.{}g}", v, sig);
  int digits = static_cast<int>(std::floor(std::log10(a))) + 1;
  int dec = std::max(0, sig - digits);
  return fmt::format("{:.{}f}", v, dec);
}

// Seconds with a unit that keeps 3 significant digits readable.
std::string dur(double s) {
  double a = std::fabs(s);
  if (a >= 1) return num(s) + " s";
  if (a >= 1e-3) return num(s * 1e3) + " ms";
  if (a >= 1e-6 || a == 0) return num(s * 1e6) + " \u00b5s";
  return num(s * 1e9) + " ns";
}

std::string bytes_str(double b) {
  if (b >= 1e9) return num(b / 1e9) + " GB";
  if (b >= 1e6) return num(b / 1e6) + " MB";
  if (b >= 1e3) return num(b / 1e3) + " kB";
  return num(b) + " B";
}

std::string energy_str(double pj) {
  if (pj >= 1e11) return num(pj * 1e-12) + " J";
  if (pj >= 1e8) return num(pj * 1e-9) + " mJ";
  if (pj >= 1e5) return num(pj * 1e-6) + " \u00b5J";
  return num(pj * 1e-3) + " nJ";
}

// 10^e as a plain number (axis labels of log plots).
std::string decade(double e) {
  if (e >= 0 && e <= 6) return fmt::format("{:.0f}", std::pow(10.0, e));
  if (e < 0 && e >= -4) return fmt::format("{:.{}f}", std::pow(10.0, e), static_cast<int>(-e));
  return fmt::format("1e{:.0f}", e);
}

std::string rate_decade(double e) {
  const char* units[] = {"FLOP/s", "kFLOP/s", "MFLOP/s", "GFLOP/s", "TFLOP/s", "PFLOP/s"};
  int u = std::clamp(static_cast<int>(std::floor(e / 3)), 0, 5);
  return fmt::format("{:.0f} {}", std::pow(10.0, e - 3 * u), units[u]);
}

std::string flops_str(double f) {
  if (f >= 1e12) return num(f / 1e12) + " TFLOP";
  if (f >= 1e9) return num(f / 1e9) + " GFLOP";
  if (f >= 1e6) return num(f / 1e6) + " MFLOP";
  if (f >= 1e3) return num(f / 1e3) + " kFLOP";
  return num(f) + " FLOP";
}

std::string rate_str(double flops_per_s) {
  if (flops_per_s >= 1e12) return num(flops_per_s / 1e12) + " TFLOP/s";
  if (flops_per_s >= 1e9) return num(flops_per_s / 1e9) + " GFLOP/s";
  if (flops_per_s >= 1e6) return num(flops_per_s / 1e6) + " MFLOP/s";
  return num(flops_per_s) + " FLOP/s";
}

const char* kCss = R"CSS(
:root { --mac:#3b82f6; --vector:#10b981; --dma:#f59e0b; --view:#9ca3af; --cpu:#8b5cf6; --rt:#94a3b8;
        --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
header { background: #0f172a; color: #f8fafc; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; word-break: break-all; }
header .sub { color: #cbd5e1; margin-top: 4px; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 8px; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(205px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 22px; font-weight: 600; margin: 2px 0; }
.card .d { color: var(--muted); font-size: 12px; }
.bar { display: flex; height: 18px; border-radius: 4px; overflow: hidden; margin: 8px 0 4px; background: var(--line); }
.bar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 12.5px; color: var(--muted); margin: 6px 0; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.k-mac { fill: var(--mac); background: var(--mac); } .k-vector { fill: var(--vector); background: var(--vector); }
.k-dma { fill: var(--dma); background: var(--dma); } .k-view { fill: var(--view); background: var(--view); }
.k-cpu { fill: var(--cpu); background: var(--cpu); } .k-rt { fill: var(--rt); background: var(--rt); }
.k-fused { fill: #cbd5e1; background: #cbd5e1; }
.o-mac { stroke: var(--mac); } .o-vector { stroke: var(--vector); } .o-dma { stroke: var(--dma); } .o-view { stroke: var(--view); }
.e-mac { background: var(--mac); } .e-sram { background: #06b6d4; } .e-dram { background: var(--dma); } .e-static { background: var(--view); }
svg text { font: 11px system-ui, -apple-system, "DejaVu Sans", sans-serif; fill: #374151; }
svg .grid { stroke: #eef0f3; } svg .axis { stroke: #9ca3af; }
#tl-plot rect.s { stroke: #fff; stroke-width: 0.6px; vector-effect: non-scaling-stroke; }
.tl-wrap { width: 100%; }
#timeline { cursor: grab; user-select: none; }
.btn { font: inherit; font-size: 12.5px; padding: 3px 10px; border: 1px solid #cbd5e1; border-radius: 4px; background: #fff; cursor: pointer; }
.btn:hover { background: #f1f5f9; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { padding: 4px 6px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.name { max-width: 230px; overflow: hidden; text-overflow: ellipsis; }
td.reason { white-space: normal; max-width: 620px; color: #92400e; }
th { position: sticky; top: 0; background: #f1f5f9; cursor: pointer; user-select: none; }
th:hover { background: #e2e8f0; }
th.asc::after { content: " \25B2"; font-size: 10px; } th.desc::after { content: " \25BC"; font-size: 10px; }
tbody tr:hover { background: #f8fafc; }
.tablewrap { max-height: 640px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
.pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 11.5px; color: #fff; }
.pill.npu { background: #2563eb; } .pill.cpu { background: var(--cpu); }
.errors { display: none; background: #fee2e2; color: #991b1b; padding: 8px 28px; white-space: pre-wrap; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
)CSS";

// Errors while the page runs are shown on the page and in its title (tests read the title).
const char* kErrorHook = R"JS(
window.onerror = function (msg, src, line, col) {
  document.title = 'ERROR: ' + msg + ' (line ' + line + ')';
  var d = document.getElementById('errors');
  if (d) { d.style.display = 'block'; d.textContent += 'Script error: ' + msg + ' (line ' + line + ')\n'; }
};
)JS";

const char* kScript = R"JS(
(function () {
  // Sortable tables: click a header; numbers sort by data-v, text by its content.
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var ths = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths, function (th, col) {
      th.title = 'Sort by ' + th.textContent;
      th.addEventListener('click', function () {
        var numeric = th.classList.contains('n');
        var asc = th.classList.contains('asc') ? false : th.classList.contains('desc') ? true : !numeric;
        Array.prototype.forEach.call(ths, function (h) { h.classList.remove('asc', 'desc'); });
        th.classList.add(asc ? 'asc' : 'desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(r) {
          var c = r.cells[col];
          if (!numeric) return c.textContent.toLowerCase();
          var v = c.getAttribute('data-v');
          return v === null || v === '' ? NaN : parseFloat(v);
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          if (numeric) {
            if (isNaN(x) && isNaN(y)) return 0;
            if (isNaN(x)) return 1;            // empty cells last either way
            if (isNaN(y)) return -1;
            return asc ? x - y : y - x;
          }
          return asc ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // Timeline: wheel zooms around the pointer, drag pans, double-click shows everything.
  var svg = document.getElementById('timeline');
  if (!svg) return;
  var plot = document.getElementById('tl-plot'), axis = document.getElementById('tl-axis');
  var T = parseFloat(svg.getAttribute('data-t')), PW = parseFloat(svg.getAttribute('data-pw'));
  var H = parseFloat(svg.getAttribute('data-h')), LW = parseFloat(svg.getAttribute('data-lw'));
  var W = parseFloat(svg.getAttribute('data-w'));
  function scale() { var r = svg.getBoundingClientRect(); return r.width > 0 ? W / r.width : 1; }
  var v0 = 0, v1 = PW;  // visible range in plot pixels of the full view
  var NS = 'http://www.w3.org/2000/svg';
  // A tick label in the unit that suits the visible span, with as many decimals as the step needs.
  function fmtTime(s, step, span) {
    var u = span >= 2 ? [1, ' s'] : span >= 2e-3 ? [1e3, ' ms'] : span >= 2e-6 ? [1e6, ' \u00b5s'] : [1e9, ' ns'];
    var dec = Math.max(0, -Math.floor(Math.log10(step * u[0]) + 1e-9));
    return (s * u[0]).toFixed(dec) + u[1];
  }
  function drawAxis() {
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var t0 = v0 / PW * T, t1 = v1 / PW * T, span = t1 - t0;
    if (!(span > 0)) return;
    var raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw))), step;
    if (raw > 5 * p) step = 10 * p; else if (raw > 2 * p) step = 5 * p; else if (raw > p) step = 2 * p; else step = p;
    for (var i = Math.ceil(t0 / step - 1e-9); i * step <= t1 + step * 1e-9; ++i) {
      var t = i * step, x = LW + (t - t0) / span * PW;
      var ln = document.createElementNS(NS, 'line');
      ln.setAttribute('x1', x); ln.setAttribute('x2', x); ln.setAttribute('y1', 20); ln.setAttribute('y2', H);
      ln.setAttribute('class', 'grid');
      axis.appendChild(ln);
      var tx = document.createElementNS(NS, 'text');
      tx.setAttribute('x', x); tx.setAttribute('y', 14); tx.setAttribute('text-anchor', 'middle');
      tx.textContent = fmtTime(t, step, span);
      axis.appendChild(tx);
    }
  }
  function show(a, b) {
    var minw = PW / 1e7;
    a = Math.max(0, a); b = Math.min(PW, b);
    if (b - a < minw) { var c = (a + b) / 2; a = c - minw / 2; b = c + minw / 2; }
    v0 = a; v1 = b;
    plot.setAttribute('viewBox', v0 + ' 0 ' + (v1 - v0) + ' ' + plot.getAttribute('height'));
    drawAxis();
  }
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = svg.getBoundingClientRect();
    var fx = Math.min(1, Math.max(0, ((e.clientX - r.left) * scale() - LW) / PW));
    var c = v0 + fx * (v1 - v0), k = e.deltaY > 0 ? 1.25 : 0.8;
    show(c - fx * (v1 - v0) * k, c + (1 - fx) * (v1 - v0) * k);
  }, { passive: false });
  var drag = null;
  svg.addEventListener('mousedown', function (e) { drag = { x: e.clientX, a: v0, b: v1 }; svg.style.cursor = 'grabbing'; });
  window.addEventListener('mouseup', function () { drag = null; svg.style.cursor = ''; });
  window.addEventListener('mousemove', function (e) {
    if (!drag) return;
    var d = (e.clientX - drag.x) * scale() / PW * (drag.b - drag.a);
    d = Math.max(-drag.a, Math.min(PW - drag.b, -d));
    show(drag.a + d, drag.b + d);
  });
  svg.addEventListener('dblclick', function () { show(0, PW); });
  function zoomTo(spec) {
    var z = spec.split(',').map(parseFloat);
    show(z[0] / T * PW, z[1] / T * PW);
  }
  document.querySelectorAll('[data-zoom]').forEach(function (b) {
    b.addEventListener('click', function () { zoomTo(b.getAttribute('data-zoom')); });
  });
  zoomTo(svg.getAttribute('data-initial'));
})();
)JS";

// ---- summary ----

void summary_section(Out& o, const Profile& p) {
  const auto& t = p.timing;
  const auto& hw = *p.hw;
  const double total = t.total_seconds();
  const int64_t flops_all = p.flops_npu + p.flops_cpu;
  auto card = [&](const std::string& k, const std::string& v, const std::string& d) {
    put(o, "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"d\">{}</div></div>\n",
        html_escape(k), html_escape(v), html_escape(d));
  };
  o += "<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">\n";
  card("Simulated latency", dur(total),
       fmt::format("NPU {} \u00b7 dispatch {} \u00b7 CPU\u2194NPU transfers {} \u00b7 CPU {} (measured)",
                   dur(t.npu_seconds), dur(t.dispatch_seconds), dur(t.boundary_seconds), dur(t.cpu_seconds)));
  card("Energy / prediction", energy_str(t.energy.total_pj()),
       fmt::format("MAC {} \u00b7 SRAM {} \u00b7 DRAM {} \u00b7 static {}", energy_str(t.energy.mac_pj),
                   energy_str(t.energy.sram_pj), energy_str(t.energy.dram_pj), energy_str(t.energy.static_pj)));
  card("MAC utilization", num(100 * t.mac_utilization) + " %",
       fmt::format("{} MACs in {} cycles on {} cores", num(static_cast<double>(t.macs)), t.cycles, hw.cores));
  card("DRAM traffic", bytes_str(static_cast<double>(t.dram_read + t.dram_write)),
       fmt::format("read {} \u00b7 write {}; {} more served by the system cache", bytes_str(static_cast<double>(t.dram_read)),
                   bytes_str(static_cast<double>(t.dram_write)), bytes_str(static_cast<double>(t.cache_bytes))));
  card("Nodes on the NPU", fmt::format("{} / {}", p.nodes_on_npu, p.rows.size()),
       fmt::format("{} segments, {} layers, {} tasks", p.program->segments.size(), p.program->layers.size(),
                   p.program->tasks.size()));
  card("FLOPs on the NPU",
       flops_all ? num(100.0 * static_cast<double>(p.flops_npu) / static_cast<double>(flops_all)) + " %" : std::string("-"),
       fmt::format("{} on the NPU, {} on the CPU (counting Conv/Gemm/MatMul/RNN there)",
                   flops_str(static_cast<double>(p.flops_npu)), flops_str(static_cast<double>(p.flops_cpu))));
  card("Hardware", hw.name,
       fmt::format("{} cores \u00d7 {}\u00d7{} MACs @ {} GHz; {} TFLOP/s FP16; DRAM {} GB/s", hw.cores, hw.mac.rows,
                   hw.mac.cols, num(hw.clock_ghz), num(hw.peak_tflops_fp16()), num(hw.memory.dram_bandwidth_gbps, 4)));
  card("Achieved on the NPU", t.npu_seconds > 0 ? rate_str(static_cast<double>(p.flops_npu) / t.npu_seconds) : std::string("-"),
       fmt::format("NPU FLOPs over the simulated NPU time; peak {}", rate_str(hw.peak_flops_fp16())));
  o += "</div>\n";
  // Energy as a stacked bar.
  const double e = t.energy.total_pj();
  if (e > 0) {
    o += "<div class=\"bar\" title=\"energy breakdown\">";
    const std::pair<const char*, double> parts[] = {
        {"mac", t.energy.mac_pj}, {"sram", t.energy.sram_pj}, {"dram", t.energy.dram_pj}, {"static", t.energy.static_pj}};
    for (auto [cls, v] : parts)
      if (v > 0) put(o, "<span class=\"e-{}\" style=\"width:{:.3f}%\" title=\"{}: {}\"></span>", cls, 100 * v / e, cls, energy_str(v));
    o += "</div><div class=\"legend\">";
    for (auto [cls, v] : parts)
      put(o, "<span><i class=\"e-{}\"></i>{} {} %</span>", cls, cls, num(100 * v / e));
    o += "</div>\n";
  }
  o += "<p class=\"note\">NPU times are simulated by opennpu's tile-level timing model of this hardware description; "
       "CPU segments are wall time measured on this machine during one prediction. On the timeline, NPU tasks keep their "
       "simulated times; CPU segments and the runtime's overheads are inserted in segment order and shift what follows";
  if (std::fabs(p.timeline_seconds - total) > 1e-3 * total)
    put(o, " (its length, {}, differs from the simulated latency because the last NPU task to finish is not in the last "
           "segment)", dur(p.timeline_seconds));
  o += ".</p></section>\n";
}

// ---- timeline ----

struct Rect {
  double t0, t1;
  std::string cls;
  std::string title;
  int count = 1;
  std::string first, last;  // layer names (merged rectangles)
};

struct Lane {
  std::string label;
  std::vector<Rect> rects;
  bool core_start = false;
};

// Merges neighbours of the same class closer than `tol` seconds.
std::vector<Rect> merge(const std::vector<Rect>& in, double tol) {
  std::vector<Rect> out;
  for (const auto& r : in) {
    if (!out.empty() && out.back().cls == r.cls && r.t0 - out.back().t1 <= tol) {
      Rect& m = out.back();
      m.t1 = std::max(m.t1, r.t1);
      m.count += r.count;
      m.last = r.last;
      continue;
    }
    out.push_back(r);
  }
  return out;
}

void timeline_section(Out& o, const Profile& p, size_t max_rects) {
  const auto& prog = *p.program;
  const double T = p.timeline_seconds > 0 ? p.timeline_seconds : 1e-9;
  std::vector<Lane> lanes;
  lanes.push_back({"CPU", {}, false});
  lanes.push_back({"runtime", {}, false});
  for (const auto& r : p.rows)
    if (r.device == "cpu" && r.timed)
      lanes[0].rects.push_back({r.t0, r.t1, "k-cpu", fmt::format("{} ({}) on the CPU: {} measured", r.name, r.op, dur(r.t1 - r.t0)),
                                1, r.name, r.name});
  for (const auto& s : p.overheads)
    lanes[1].rects.push_back({s.t0, s.t1, "k-rt", fmt::format("{}: {} ({})", s.name, dur(s.t1 - s.t0), s.detail), 1, s.name, s.name});
  const size_t first_core_lane = lanes.size();
  const char* engine_labels[] = {"MAC", "vector", "DMA in", "DMA out"};
  for (int c = 0; c < p.hw->cores; ++c)
    for (int e = 0; e < 4; ++e) lanes.push_back({fmt::format("core {} {}", c, engine_labels[e]), {}, e == 0});
  size_t tasks_drawn = 0;
  for (size_t ti = 0; ti < prog.tasks.size(); ++ti) {
    if (p.task_t0[ti] < 0) continue;
    const auto& task = prog.tasks[ti];
    const auto& L = prog.layers.at(task.layer);
    int e = task.engine == npu::Engine::Mac ? 0 : task.engine == npu::Engine::Vec ? 1 : task.engine == npu::Engine::DmaIn ? 2 : 3;
    std::string kind = L.kind == npu::LayerKind::Gemm ? "mac" : L.kind == npu::LayerKind::Vector ? "vector"
                       : L.kind == npu::LayerKind::Move ? "dma" : "view";
    std::string title = fmt::format("{} ({}{}{}) \u2014 {}, core {}: {} at {}", L.name, L.op, L.fused.empty() ? "" : "+", L.fused,
                                    engine_labels[e], task.core, dur(p.task_t1[ti] - p.task_t0[ti]), dur(p.task_t0[ti]));
    if (task.bytes) title += ", " + bytes_str(static_cast<double>(task.bytes));
    if (task.macs) title += fmt::format(", {} MACs", task.macs);
    lanes.at(first_core_lane + 4 * task.core + e).rects.push_back({p.task_t0[ti], p.task_t1[ti], "k-" + kind, title, 1, L.name, L.name});
    ++tasks_drawn;
  }
  for (auto& l : lanes)
    std::stable_sort(l.rects.begin(), l.rects.end(), [](const Rect& a, const Rect& b) { return a.t0 < b.t0; });

  // Geometry: label column, plot width in pixels; tolerance for merging grows until the count fits.
  const double LW = 118, PW = 1180, W = LW + PW + 12;
  const double lane_h = 10, lane_gap = 2, core_gap = 7, top = 24;
  size_t total = 0;
  for (auto& l : lanes) total += l.rects.size();
  std::string merge_note;
  if (total > max_rects) {
    const double px = T / PW;
    double tol = 0;
    for (double f : {0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0}) {
      tol = f * px;
      size_t n = 0;
      for (auto& l : lanes) n += merge(l.rects, tol).size();
      if (n <= max_rects) break;
    }
    size_t n = 0;
    for (auto& l : lanes) { l.rects = merge(l.rects, tol); n += l.rects.size(); }
    merge_note = fmt::format(" {} rectangles were merged into {}: neighbouring tasks of the same kind on one engine less than "
                             "{} apart are drawn as one (hover shows how many; the Perfetto trace has every task).",
                             total, n, dur(tol));
    if (n > max_rects) {
      // Still too many: draw the first max_rects in time order and say where drawing stopped.
      std::vector<std::pair<double, size_t>> starts;
      for (size_t li = 0; li < lanes.size(); ++li) for (const auto& r : lanes[li].rects) starts.push_back({r.t0, li});
      std::nth_element(starts.begin(), starts.begin() + static_cast<std::ptrdiff_t>(max_rects), starts.end());
      double cut = starts[max_rects].first;
      for (auto& l : lanes) l.rects.erase(std::remove_if(l.rects.begin(), l.rects.end(), [&](const Rect& r) { return r.t0 >= cut; }), l.rects.end());
      merge_note += fmt::format(" Capped at {} rectangles: nothing is drawn after {}.", max_rects, dur(cut));
    }
  }

  double y = top;
  std::vector<double> lane_y;
  for (const auto& l : lanes) {
    if (l.core_start) y += core_gap;
    lane_y.push_back(y);
    y += lane_h + lane_gap;
  }
  const double H = y + 4;
  // Time range of the NPU work, for the zoom button.
  double n0 = T, n1 = 0;
  for (size_t ti = 0; ti < prog.tasks.size(); ++ti)
    if (p.task_t0[ti] >= 0) { n0 = std::min(n0, p.task_t0[ti]); n1 = std::max(n1, p.task_t1[ti]); }

  // When the runtime's overheads dwarf the NPU work, open on the NPU work (the button shows all).
  const bool zoom_npu = n1 > n0 && (n1 - n0) < 0.2 * T;
  o += "<section id=\"timeline-section\"><h2>Timeline</h2>\n";
  put(o, "<p class=\"note\">One prediction, {} long. Per NPU core: MAC array, vector unit, DMA in, DMA out; above them the CPU "
         "(measured) and the runtime's dispatch and CPU\u2194NPU transfers. Colour = kind of the layer a task belongs to. "
         "Scroll the wheel over the chart to zoom, drag to pan, double-click to reset. {} tasks.{}{}</p>\n",
      dur(p.timeline_seconds), tasks_drawn, merge_note,
      zoom_npu ? fmt::format(" <b>Opened on the NPU work ({} of the {} prediction)</b>; \u201cwhole prediction\u201d shows the rest.",
                             dur(n1 - n0), dur(T))
               : std::string());
  o += "<div style=\"margin:6px 0\"><button class=\"btn\" type=\"button\" data-zoom=\"0,";
  put(o, "{:.12g}\">whole prediction</button> ", T);
  if (n1 > n0) put(o, "<button class=\"btn\" type=\"button\" data-zoom=\"{:.12g},{:.12g}\">NPU work only</button>", n0, n1);
  o += "</div>\n<div class=\"legend\"><span><i class=\"k-mac\"></i>MAC layer (Conv/Gemm/MatMul)</span>"
       "<span><i class=\"k-vector\"></i>vector layer</span><span><i class=\"k-dma\"></i>data movement layer</span>"
       "<span><i class=\"k-cpu\"></i>CPU node</span><span><i class=\"k-rt\"></i>dispatch / transfer</span></div>\n";
  put(o, "<div class=\"tl-wrap\"><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
         "viewBox=\"0 0 {0} {1}\" style=\"width:100%;height:auto\" data-t=\"{2:.12g}\" data-pw=\"{3}\" data-lw=\"{4}\" "
         "data-h=\"{1}\" data-w=\"{0}\" data-initial=\"{5:.12g},{6:.12g}\">\n",
      W, H, T, PW, LW, zoom_npu ? n0 : 0.0, zoom_npu ? n1 : T);
  o += "<g id=\"tl-axis\"></g>\n";
  for (size_t li = 0; li < lanes.size(); ++li) {
    const auto& l = lanes[li];
    put(o, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\"{}>{}</text>", LW - 8, lane_y[li] + lane_h - 1,
        l.core_start || li < first_core_lane ? " font-weight=\"600\"" : "", html_escape(l.label));
    put(o, "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>\n", LW, LW + PW, lane_y[li] + lane_h + 1,
        lane_y[li] + lane_h + 1);
  }
  put(o, "<svg id=\"tl-plot\" x=\"{0}\" y=\"0\" width=\"{1}\" height=\"{2}\" viewBox=\"0 0 {1} {2}\" preserveAspectRatio=\"none\">\n",
      LW, PW, H);
  for (size_t li = 0; li < lanes.size(); ++li) {
    for (const auto& r : lanes[li].rects) {
      double x = r.t0 / T * PW, w = std::max((r.t1 - r.t0) / T * PW, 0.4);
      std::string title = r.count == 1 ? r.title
                          : fmt::format("{} tasks, {} \u2026 {}: {} to {}", r.count, r.first, r.last, dur(r.t0), dur(r.t1));
      // Wide rectangles get a hairline edge so neighbours stay apart; on thin ones it would hide the colour.
      put(o, "<rect class=\"{}{}\" x=\"{:.3f}\" y=\"{:.1f}\" width=\"{:.3f}\" height=\"{}\"><title>{}</title></rect>\n", r.cls,
          w >= 3 ? " s" : "", x, lane_y[li], w, lane_h, html_escape(title));
    }
  }
  o += "</svg></svg></div></section>\n";
}

// ---- roofline ----

void roofline_section(Out& o, const Profile& p) {
  // Layers that moved no byte through DRAM (operands in SRAM or the system cache) have no
  // finite intensity: they sit on the right edge as hollow dots.
  struct Pt { double x, y, sec; const NodeRow* r; bool no_dram; };
  std::vector<Pt> pts;
  size_t skipped = 0, no_dram = 0;
  for (const auto& r : p.rows) {
    if (r.layer < 0) continue;
    double sec = r.t1 - r.t0;
    double bytes = static_cast<double>(r.dram_read + r.dram_write);
    if (r.flops <= 0 || sec <= 0 || !r.timed) { ++skipped; continue; }
    no_dram += bytes <= 0;
    pts.push_back({bytes > 0 ? static_cast<double>(r.flops) / bytes : 0.0, static_cast<double>(r.flops) / sec, sec, &r, bytes <= 0});
  }
  const double peak = p.hw->peak_flops_fp16();
  const double bw = p.hw->dram_bytes_per_second();
  const double vpeak = static_cast<double>(p.hw->vector.lanes * p.hw->cores) * p.clock_hz;  // one op per lane per cycle
  const double ridge = peak / bw;
  double xmin = ridge / 10, xmax = ridge * 10, ymin = peak / 1e3, ymax = peak * 1.5;
  for (const auto& q : pts) {
    if (!q.no_dram) { xmin = std::min(xmin, q.x); xmax = std::max(xmax, q.x); }
    ymin = std::min(ymin, q.y); ymax = std::max(ymax, q.y);
  }
  const double lx0 = std::floor(std::log10(xmin)), lx1 = std::ceil(std::log10(xmax));
  const double ly0 = std::floor(std::log10(ymin)), ly1 = std::ceil(std::log10(ymax));
  const double W = 960, H = 480, L = 84, R = 24, Tm = 16, B = 46, PW = W - L - R, PH = H - Tm - B;
  auto X = [&](double x) { return L + (std::log10(x) - lx0) / (lx1 - lx0) * PW; };
  auto Y = [&](double y) { return Tm + PH - (std::log10(y) - ly0) / (ly1 - ly0) * PH; };

  o += "<section id=\"roofline-section\"><h2>Roofline</h2>\n";
  put(o, "<p class=\"note\">One dot per NPU layer: arithmetic intensity (FLOPs per byte of DRAM traffic) against achieved FLOP/s "
         "(layer FLOPs over its simulated span from first to last task; layers of a pipelined engine overlap, so spans are upper "
         "bounds of their cost). Roofs: the engine's peak FP16 rate {} and DRAM {} GB/s \u00d7 intensity; dashed: the vector "
         "units at one op per lane per cycle ({}). Dot area grows with the layer's time.{}{}</p>\n",
      rate_str(peak), num(p.hw->memory.dram_bandwidth_gbps, 4), rate_str(vpeak),
      no_dram ? fmt::format(" {} layers moved no DRAM bytes (operands from SRAM or the system cache): hollow dots on the right "
                            "edge.", no_dram)
              : std::string(),
      skipped ? fmt::format(" {} layers without FLOPs (data movement, views) are not drawn.", skipped) : std::string());
  put(o, "<svg id=\"roofline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n", W, H);
  // Grid and decade labels.
  for (double e = lx0; e <= lx1 + 1e-9; ++e) {
    double x = X(std::pow(10.0, e));
    put(o, "<line class=\"grid\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\"/>", x, Tm, Tm + PH);
    put(o, "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, Tm + PH + 16, decade(e));
  }
  for (double e = ly0; e <= ly1 + 1e-9; ++e) {
    double y = Y(std::pow(10.0, e));
    put(o, "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + PW, y, y);
    put(o, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 6, y + 4, html_escape(rate_decade(e)));
  }
  put(o, "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" class=\"axis\"/>\n", L, Tm, PW, PH);
  put(o, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">arithmetic intensity (FLOP / byte of DRAM traffic)</text>\n", L + PW / 2, H - 8);
  // Roofs, clipped to the plot.
  auto roof = [&](double top, const char* style, const std::string& label) {
    double xa = std::pow(10.0, lx0), xb = std::pow(10.0, lx1);
    double xs = std::max(xa, std::pow(10.0, ly0) / bw);  // where the bandwidth roof enters the plot
    double xr = std::min(std::max(top / bw, xs), xb);
    std::string pts_s = fmt::format("{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}", X(xs), Y(std::min(bw * xs, top)), X(xr),
                                    Y(std::min(bw * xr, top)), X(xb), Y(top));
    put(o, "<polyline points=\"{}\" fill=\"none\" {}/>\n", pts_s, style);
    put(o, "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", X(xb) - 4, Y(top) - 5, html_escape(label));
  };
  roof(peak, "stroke=\"#0f172a\" stroke-width=\"2\"", "peak FP16 " + rate_str(peak));
  if (vpeak > 0 && vpeak < peak) roof(vpeak, "stroke=\"#64748b\" stroke-width=\"1.3\" stroke-dasharray=\"5,4\"", "vector units " + rate_str(vpeak));
  {
    // Label the bandwidth roof along its slope, near its lower-left end.
    double xa = std::max(std::pow(10.0, lx0), std::pow(10.0, ly0) / bw) * 1.6;
    double xa2 = std::min(xa * 10, ridge);
    if (xa < ridge) {
      double ang = std::atan2(Y(bw * xa2) - Y(bw * xa), X(xa2) - X(xa)) * 180 / M_PI;
      put(o, "<text transform=\"translate({:.1f},{:.1f}) rotate({:.1f})\">DRAM {} GB/s</text>\n", X(xa), Y(bw * xa) - 6, ang,
          num(p.hw->memory.dram_bandwidth_gbps, 4));
    }
  }
  // Dots, the largest first so small ones stay on top.
  double max_sec = 0;
  for (const auto& q : pts) max_sec = std::max(max_sec, q.sec);
  std::stable_sort(pts.begin(), pts.end(), [](const Pt& a, const Pt& b) { return a.sec > b.sec; });
  for (const auto& q : pts) {
    double rad = 3 + 7 * std::sqrt(q.sec / max_sec);
    const char* style = q.no_dram ? "fill=\"#fff\" fill-opacity=\"0.9\" stroke-width=\"1.6\""
                                  : "fill-opacity=\"0.75\" stroke=\"#fff\" stroke-width=\"0.8\"";
    std::string cls = q.no_dram ? "o-" + q.r->kind : "k-" + q.r->kind;
    std::string intensity = q.no_dram ? std::string("no DRAM traffic") : "intensity " + num(q.x) + " FLOP/B";
    put(o, "<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\" {}><title>{}</title></circle>\n", cls,
        q.no_dram ? L + PW : X(q.x), Y(q.y), rad, style,
        html_escape(fmt::format("{} ({})\n{}\nachieved {} ({} % of peak)\n{}, {} DRAM, {}", q.r->name, q.r->op, intensity,
                                rate_str(q.y), num(100 * q.y / peak), flops_str(static_cast<double>(q.r->flops)),
                                bytes_str(static_cast<double>(q.r->dram_read + q.r->dram_write)), dur(q.sec))));
  }
  o += "</svg>\n<div class=\"legend\"><span><i class=\"k-mac\"></i>MAC layer</span><span><i class=\"k-vector\"></i>vector layer</span>"
       "<span><i class=\"k-dma\"></i>data movement layer</span></div></section>\n";
}

// ---- tables ----

void td_num(Out& o, double v, const std::string& shown) {
  put(o, "<td class=\"n\" data-v=\"{:.9g}\">{}</td>", v, shown);
}
void td_empty(Out& o) { o += "<td class=\"n\" data-v=\"\"></td>"; }

void layer_table(Out& o, const Profile& p) {
  const double total = p.timing.total_seconds();
  const double peak = p.hw->peak_flops_fp16();
  o += "<section id=\"layers-section\"><h2>Layers</h2>\n"
       "<p class=\"note\">Every node in graph order; click a column header to sort. NPU rows: <i>span</i> is the simulated time "
       "from the layer's first task to its last (layers overlap when the engine pipelines them); <i>attributed</i> is the part "
       "of the NPU time the simulator charges to the layer on the critical path (these add up to the NPU time). CPU rows: "
       "measured wall time. "
       "\u201cfused\u201d nodes were folded into the MAC layer before them.</p>\n"
       "<div class=\"tablewrap\"><table id=\"layers\" class=\"sortable\"><thead><tr>"
       "<th class=\"n\">#</th><th>node</th><th>op</th><th>device</th><th>kind</th><th class=\"n\">start (\u00b5s)</th>"
       "<th class=\"n\">span (\u00b5s)</th><th class=\"n\">attrib. (\u00b5s)</th><th class=\"n\">% latency</th>"
       "<th class=\"n\">MFLOP</th>"
       "<th class=\"n\">DRAM (kB)</th><th class=\"n\">FLOP/B</th>"
       "<th class=\"n\">GFLOP/s</th><th class=\"n\">% of peak</th><th class=\"n\" title=\"cycles compute engines waited for DMA\">DMA wait</th>"
       "<th class=\"n\">energy (\u00b5J)</th></tr></thead><tbody>\n";
  for (const auto& r : p.rows) {
    o += "<tr>";
    td_num(o, r.node, std::to_string(r.node));
    put(o, "<td class=\"name\" title=\"{0}\">{0}</td><td>{1}</td><td><span class=\"pill {2}\">{2}</span></td>", html_escape(r.name),
        html_escape(r.op), r.device);
    if (!r.fused_into.empty()) put(o, "<td class=\"name short\" title=\"fused into {0}\"><i>fused</i></td>", html_escape(r.fused_into));
    else put(o, "<td>{}</td>", r.kind);
    const double sec = r.t1 - r.t0;
    if (r.timed) {
      td_num(o, r.t0 * 1e6, num(r.t0 * 1e6, 4));
      td_num(o, sec * 1e6, num(sec * 1e6, 3));
      td_num(o, r.attributed * 1e6, num(r.attributed * 1e6, 3));
      td_num(o, total > 0 ? 100 * r.attributed / total : 0, num(total > 0 ? 100 * r.attributed / total : 0, 3));
    } else {
      td_empty(o); td_empty(o); td_empty(o); td_empty(o);
    }
    if (r.flops) td_num(o, r.flops / 1e6, num(r.flops / 1e6)); else td_empty(o);
    if (r.layer >= 0) {
      double bytes = static_cast<double>(r.dram_read + r.dram_write);
      put(o, "<td class=\"n\" data-v=\"{:.9g}\" title=\"DRAM read {} \u00b7 write {}; system cache read {} \u00b7 write {}\">{}</td>",
          bytes / 1e3, bytes_str(static_cast<double>(r.dram_read)), bytes_str(static_cast<double>(r.dram_write)),
          bytes_str(static_cast<double>(r.cache_read)), bytes_str(static_cast<double>(r.cache_write)), num(bytes / 1e3));
      if (bytes > 0 && r.flops) td_num(o, r.flops / bytes, num(r.flops / bytes)); else td_empty(o);
    } else {
      td_empty(o); td_empty(o);
    }
    if (r.timed && sec > 0 && r.flops) {
      double rate = static_cast<double>(r.flops) / sec;
      td_num(o, rate / 1e9, num(rate / 1e9));
      if (r.device == "npu") td_num(o, 100 * rate / peak, num(100 * rate / peak)); else td_empty(o);
    } else {
      td_empty(o); td_empty(o);
    }
    if (r.layer >= 0) {
      td_num(o, static_cast<double>(r.stall_memory), std::to_string(r.stall_memory));
      td_num(o, r.energy_pj * 1e-6, num(r.energy_pj * 1e-6));
    } else {
      td_empty(o); td_empty(o);
    }
    o += "</tr>\n";
  }
  o += "</tbody></table></div></section>\n";
}

void placement_section(Out& o, const Profile& p) {
  // Why nodes stayed on the CPU, most frequent reason first.
  std::map<std::string, int> reasons;
  for (const auto& r : p.rows) if (r.device == "cpu") reasons[r.reason.empty() ? "(no reason given)" : r.reason]++;
  std::vector<std::pair<int, std::string>> by_count;
  for (const auto& [k, v] : reasons) by_count.push_back({v, k});
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.first > b.first; });

  o += "<section id=\"placement-section\"><h2>Device placement</h2>\n";
  put(o, "<p class=\"note\">{} of {} nodes run on the NPU in {} segments; the rest fall back to the CPU for the reason given.</p>\n",
      p.nodes_on_npu, p.rows.size(), p.program->segments.size());
  if (!by_count.empty()) {
    o += "<table id=\"fallback\" class=\"sortable\" style=\"margin-bottom:12px\"><thead><tr><th class=\"n\">nodes</th>"
         "<th>reason for CPU fallback</th></tr></thead><tbody>\n";
    for (const auto& [n, why] : by_count)
      put(o, "<tr><td class=\"n\" data-v=\"{0}\">{0}</td><td class=\"reason\">{1}</td></tr>\n", n, html_escape(why));
    o += "</tbody></table>\n";
  }
  o += "<div class=\"tablewrap\"><table id=\"placement\" class=\"sortable\"><thead><tr><th class=\"n\">#</th><th>node</th>"
       "<th>op</th><th>device</th><th class=\"n\">segment</th><th>reason / note</th></tr></thead><tbody>\n";
  for (const auto& r : p.rows) {
    std::string note = r.device == "cpu" ? r.reason : !r.fused_into.empty() ? "fused into " + r.fused_into : "";
    put(o, "<tr><td class=\"n\" data-v=\"{0}\">{0}</td><td class=\"name\" title=\"{1}\">{1}</td><td>{2}</td>"
           "<td><span class=\"pill {3}\">{3}</span></td><td class=\"n\" data-v=\"{4}\">{4}</td><td class=\"reason\">{5}</td></tr>\n",
        r.node, html_escape(r.name), html_escape(r.op), r.device, r.segment, html_escape(note));
  }
  o += "</tbody></table></div></section>\n";
}

}  // namespace

std::string html_report(const Profile& p, size_t max_rects) {
  Out o;
  o.reserve(1 << 20);
  o += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  put(o, "<title>opennpu profile: {} on {}</title>\n", html_escape(p.model_name), html_escape(p.hw->name));
  o += "<script>";
  o += kErrorHook;
  o += "</script>\n<style>";
  o += kCss;
  o += "</style></head><body>\n<header>";
  put(o, "<h1>{}</h1><div class=\"sub\">profiled on <b>{}</b> \u2014 {}</div>", html_escape(p.model_name), html_escape(p.hw->name),
      html_escape(p.hw->description));
  o += "</header>\n<div id=\"errors\" class=\"errors\"></div>\n<main>\n";
  summary_section(o, p);
  timeline_section(o, p, max_rects);
  roofline_section(o, p);
  layer_table(o, p);
  placement_section(o, p);
  o += "</main>\n<footer>Generated by opennpu profile. Self-contained: no network resources. The Chrome trace written next to "
       "this page opens in Perfetto (ui.perfetto.dev) or chrome://tracing and has every task.</footer>\n<script>";
  o += kScript;
  o += "</script>\n</body></html>\n";
  return o;
}

}  // namespace opennpu::report
