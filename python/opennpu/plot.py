"""Plots of a design-space sweep (docs/explore.md): `opennpu explore --plot` runs this.

    /usr/bin/python3 python/opennpu/plot.py OUT_DIR [--quiet]

Reads OUT_DIR/results.csv, pareto.csv and summary.json and writes
  OUT_DIR/latency_energy.{png,svg}  latency vs energy per model, every design, Pareto front joined
  OUT_DIR/sensitivity.{png,svg}     per swept axis: median latency at each value / median overall
  OUT_DIR/explore.html              one self-contained page (SVGs inline, Pareto table; no network)
Only matplotlib (python3-matplotlib, Agg backend) and the standard library.
"""
import csv
import html
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "opennpu"  # stable SVG ids from run to run


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def latency_energy(rows, pareto, models, out):
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.4), squeeze=False)
    for ax, m in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == m]
        area = [float(r["area_mm2"]) for r in mine]
        sc = ax.scatter([float(r["latency_ms"]) for r in mine], [float(r["energy_mj"]) for r in mine], c=area, s=14,
                        cmap="viridis", alpha=0.8, label="design")
        front = sorted((float(p["latency_ms"]), float(p["energy_mj"])) for p in pareto if p["scope"] == m)
        if front:
            ax.plot([f[0] for f in front], [f[1] for f in front], "o", mfc="none", mec="crimson", ms=8,
                    label="Pareto (latency, energy, area)")
        ax.set_xscale("log")
        ax.set_title(m)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("energy per inference (mJ)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        fig.colorbar(sc, ax=ax, label="area (mm$^2$)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out, f"latency_energy.{ext}"), dpi=110)
    plt.close(fig)


def sensitivity(rows, summary, models, out):
    """For each swept axis with >1 value: median latency of the designs at each value, over the median."""
    axes = [a for a, v in summary["axes"].items() if len(v) > 1 and a in rows[0]]
    if not axes:
        axes = ["cores"]
    fig, ax_list = plt.subplots(1, len(axes), figsize=(3.3 * len(axes), 3.6), squeeze=False)
    table = []
    for ax, a in zip(ax_list[0], axes):
        for m in models:
            mine = [r for r in rows if r["model"] == m]
            base = statistics.median(float(r["latency_ms"]) for r in mine)
            vals = sorted({r[a] for r in mine}, key=lambda v: (float(v) if re.match(r"^[0-9.e+-]+$", v) else 0, v))
            ys = [statistics.median(float(r["latency_ms"]) for r in mine if r[a] == v) / base for v in vals]
            ax.plot(range(len(vals)), ys, "o-", label=m)
            ax.set_xticks(range(len(vals)))
            ax.set_xticklabels(vals, rotation=30, fontsize=7)
            table.append((a, m, vals, ys))
        ax.set_title(a, fontsize=10)
        ax.axhline(1.0, color="gray", lw=0.5)
        ax.set_ylabel("median latency / overall median", fontsize=8)
        ax.grid(True, alpha=0.3)
    ax_list[0][0].legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out, f"sensitivity.{ext}"), dpi=110)
    plt.close(fig)
    return table


def inline_svg(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Drop the XML prolog and DOCTYPE (they name a URL); keep the <svg> element.
    return text[text.index("<svg"):]


def page(out, summary, pareto, sens):
    e = html.escape
    cols = ["scope", "point", "design"] + [a for a in summary["axes"]] + ["latency_ms", "energy_mj", "area_mm2"]
    cols = [c for c in cols if pareto and c in pareto[0]] or ["scope"]
    rows = "\n".join("<tr>" + "".join(f"<td>{e(p[c])}</td>" for c in cols) + "</tr>" for p in pareto)
    sens_rows = "\n".join(
        f"<tr><td>{e(a)}</td><td>{e(m)}</td><td>" + ", ".join(f"{e(v)}: {y:.2f}" for v, y in zip(vals, ys)) + "</td></tr>"
        for a, m, vals, ys in sens)
    area = "\n".join(f"<tr><td>{e(k)}</td><td>{v['value']:g}</td><td>{e(v['source'])}</td></tr>"
                     for k, v in summary["area_model"].items())
    title = f"opennpu explore: {e(summary['sweep'])}"
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 20px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ background: #f0f0f0; }} svg {{ max-width: 100%; height: auto; }} .errors {{ color: #b00; }}
</style></head><body>
<h1>{title}</h1>
<p>Base hardware {e(summary['base'])}; {summary['points']} design points ({summary['grid_size']} in the grid) x
{len(summary['models'])} models ({e(', '.join(summary['models']))}) = {summary['rows']} rows; fidelity {e(summary['fidelity'])}.
Results: results.csv; Pareto-optimal designs: pareto.csv.</p>
<div id="errors" class="errors"></div>
<h2>Latency vs energy</h2>
<div id="scatter">{inline_svg(os.path.join(out, 'latency_energy.svg'))}</div>
<h2>Sensitivity per axis</h2>
<div id="sensitivity">{inline_svg(os.path.join(out, 'sensitivity.svg'))}</div>
<table id="sens"><tr><th>axis</th><th>model</th><th>value: median latency / median</th></tr>
{sens_rows}</table>
<h2>Pareto-optimal designs ({len(pareto)} rows)</h2>
<table id="pareto"><tr>{''.join(f'<th>{e(c)}</th>' for c in cols)}</tr>
{rows}</table>
<h2>Area model</h2>
<table id="area"><tr><th>coefficient</th><th>value</th><th>source</th></tr>
{area}</table>
<script>
window.addEventListener("error", function (ev) {{
  document.getElementById("errors").textContent += "script error: " + ev.message;
}});
document.getElementById("errors").setAttribute("data-rows", String(document.querySelectorAll("#pareto tr").length - 1));
</script>
</body></html>
"""
    with open(os.path.join(out, "explore.html"), "w", encoding="utf-8") as f:
        f.write(doc)


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    out = argv[0]
    quiet = "--quiet" in argv[1:]
    rows = read_csv(os.path.join(out, "results.csv"))
    pareto = read_csv(os.path.join(out, "pareto.csv"))
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    models = summary["models"]
    latency_energy(rows, pareto, models, out)
    sens = sensitivity(rows, summary, models, out)
    page(out, summary, pareto, sens)
    if not quiet:
        print(f"plots: {out}/latency_energy.png, {out}/sensitivity.png, {out}/explore.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
