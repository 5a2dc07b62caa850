"""The compression report: per variant AP/AP50, latency p50/p95, throughput and size, with ratios against FP32.

Written as ``report.json`` (everything), ``report.md`` (the table, plus which layers stayed float and why) and
``report.png`` (AP drop in points against latency, one labelled point per variant, no two labels overlapping;
matplotlib's Agg canvas, so no display is needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lighthead_edge.runtime.bundle import MANIFEST_NAME, REPORT_FILES, update_manifest


def _latency(result: dict[str, Any], threads: str) -> dict[str, float] | None:
    return result.get("latency_ms", {}).get(threads)


def with_ratios(results: dict[str, dict[str, Any]], baseline: str, threads: str) -> dict[str, dict[str, Any]]:
    """Add ``ratios`` (latency p50, size and throughput against ``baseline``; AP drop in points) to each variant."""
    base = results.get(baseline)
    if base is None:
        return results
    out = {}
    for key, r in results.items():
        ratios: dict[str, float] = {}
        lat, base_lat = _latency(r, threads), _latency(base, threads)
        if lat and base_lat:
            ratios["latency_p50"] = round(lat["p50"] / base_lat["p50"], 3)
        if r.get("size_bytes") and base.get("size_bytes"):
            ratios["size"] = round(r["size_bytes"] / base["size_bytes"], 3)
        if r.get("throughput_fps") and base.get("throughput_fps"):
            ratios["throughput"] = round(r["throughput_fps"] / base["throughput_fps"], 3)
        if "coco" in r and "coco" in base:
            ratios["ap_drop_points"] = round(100 * (base["coco"]["AP"] - r["coco"]["AP"]), 3)
        out[key] = {**r, "ratios": ratios, "baseline": baseline}
    return out


def baseline_of(key: str, results: dict[str, Any]) -> str:
    """The FP32 variant a result is compared with: the same backend's ``fp32`` if measured, else the first one."""
    same = key.split("/")[0] + "/fp32"
    return same if same in results else next(iter(results))


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table plus the float-layer notes."""
    threads = report["threads"]
    lines = [f"# Compression report: {report.get('model', '')}", "", f"Host: {report.get('host', '?')}; latency at "
             f"{threads} thread(s), ratios against {report.get('baseline', 'each backend FP32')}.", "",
             "| variant | AP | AP50 | p50 ms | p95 ms | fps (async) | MB | latency x | AP drop (pts) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for key, r in report["results"].items():
        lat, coco, ratios = _latency(r, threads) or {}, r.get("coco", {}), r.get("ratios", {})
        size = r.get("size_bytes")
        lines.append(
            f"| {key} | {_fmt(coco.get('AP'))} | {_fmt(coco.get('AP50'))} | {_fmt(lat.get('p50'), '{:.1f}')} "
            f"| {_fmt(lat.get('p95'), '{:.1f}')} | {_fmt(r.get('throughput_fps'), '{:.1f}')} "
            f"| {_fmt(size and size / 1e6, '{:.2f}')} | {_fmt(ratios.get('latency_p50'), '{:.2f}')} "
            f"| {_fmt(ratios.get('ap_drop_points'), '{:.2f}')} |"
        )
    lines += _thread_table(report)
    kernels = {k: r["kernels"] for k, r in report["results"].items() if r.get("kernels")}
    if kernels:
        cap = report.get("isa", "native")
        capped = "" if cap == "native" else (f" (oneDNN capped at --isa {cap}; OpenVINO's own kernels such as TopK "
                                             "keep the host's ISA, and onnxruntime is not capped)")  # fmt: skip
        counts = "; ".join(f"{k} " + ", ".join(f"{isa} {n}" for isa, n in v.items()) for k, v in kernels.items())
        lines += ["", f"OpenVINO kernels by ISA{capped}: {counts}"]
    for key, info in report.get("quantization", {}).items():
        lines += ["", f"## {key}", "", f"- scheme: {info.get('scheme', '?')}",
                  f"- calibration: {info.get('calibration', '?')}",
                  f"- kept in float by scope (RoI coordinates, decoding, NMS, softmax): {info.get('float_scope', 0)} "
                  "nodes"]  # fmt: skip
        if info.get("ranges", {}).get("val_ap"):
            tried = ", ".join(f"{name} {ap:.4f}" for name, ap in info["ranges"]["val_ap"].items())
            r = info["ranges"]
            lines.append(f"- activation ranges: {r['used']} ({r['setting']}: {r.get('why', '')}; val AP {tried})")
        for layer in info.get("kept_float", []):
            lines.append(f"- kept in float: `{layer['name']}` ({layer['why']})")  # why: --keep-float, latency, accuracy
        if info.get("profile_ms"):
            top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(info["profile_ms"].items())[:6])
            lines.append(f"- onnxruntime profile, ms per run by op type: {top}")
    return "\n".join(lines) + "\n"


def _thread_table(report: dict[str, Any]) -> list[str]:
    """Latency p50 at every measured thread count, each with its ratio against the variant's baseline at that count.
    [] when only the headline count was measured."""
    results = report["results"]
    counts = sorted({t for r in results.values() for t in r.get("latency_ms", {})}, key=int)
    if len(counts) < 2:
        return []
    lines = ["", "## Latency p50 at each thread count", "",
             "| variant | " + " | ".join(f"{t} thr ms | x" for t in counts) + " |",
             "| --- |" + " --- | --- |" * len(counts)]  # fmt: skip
    for key, r in results.items():
        base = results.get(r.get("baseline", key), r)
        cells = []
        for t in counts:
            lat, base_lat = _latency(r, t), _latency(base, t)
            cells.append(_fmt(lat and lat["p50"], "{:.1f}"))
            cells.append(_fmt(lat and base_lat and lat["p50"] / base_lat["p50"], "{:.2f}"))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def _points(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(variant, latency p50 ms, AP drop in points against its baseline; 0 where not measured) of every variant that
    has a latency at the headline thread count."""
    points = []
    for key, r in report["results"].items():
        lat = _latency(r, report["threads"])
        if lat is not None:
            points.append((key, lat["p50"], r.get("ratios", {}).get("ap_drop_points") or 0.0))
    return points


def _label_offsets(step: float = 11.0, tries: int = 15) -> list[tuple[float, float]]:
    """Where a label may go, in points from its marker, nearest first: right, then left, then further up and down."""
    offsets = []
    for k in range(tries):
        for dy in (0.0,) if k == 0 else (k * step, -k * step):
            offsets += [(7.0, dy), (-7.0, dy)]
    return offsets


def _place_labels(fig, ax, points: list[tuple[str, float, float]]) -> None:
    """Label every point with its variant name where the label overlaps no other label and no marker and stays inside
    the axes: the first free place of :func:`_label_offsets`, with a leader line when it is not beside its marker."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for _, x, y in points:
        cx, cy = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(cx - 5, cy - 5, cx + 5, cy + 5))  # the marker
    for key, x, y in points:
        for dx, dy in _label_offsets():
            label = ax.annotate(key, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, va="center",
                                ha="left" if dx > 0 else "right")  # fmt: skip
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(t) for t in taken):
                break
            label.remove()
        else:  # nowhere free (dozens of variants on one spot): beside the marker, overlapping
            dx, dy = 7.0, 0.0
            label = ax.annotate(key, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, va="center")
        if dy:  # a leader line from the marker to the label
            ax.annotate("", (x, y), xytext=(dx, dy), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.6"})  # fmt: skip
        taken.append(label.get_window_extent(renderer))


def figure(report: dict[str, Any]):
    """AP drop in points (against each variant's FP32 baseline) against p50 latency, one labelled point per variant
    (variants without a latency are left out) -> a matplotlib ``Figure`` (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = _points(report)
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, x, y in points:
        ax.scatter([x], [y], marker="o" if "int8" in key else "s", zorder=3)
    measured = any("ap_drop_points" in r.get("ratios", {}) for r in report["results"].values())
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=1)
    ax.set_xlabel(f"latency p50, ms ({report['threads']} threads)")
    ax.set_ylabel("AP drop, points (0.5:0.95)" + ("" if measured else ": not measured"))
    ax.set_title(f"AP drop (against {report.get('baseline', 'each backend FP32')}) vs latency")
    ax.grid(alpha=0.3)
    ax.margins(x=0.35, y=0.35)
    fig.tight_layout()
    fig.canvas.draw()  # fixes the limits, so that the labels can be placed in display space
    _place_labels(fig, ax, points)
    return fig


def plot(report: dict[str, Any], path: Path) -> None:
    """Write :func:`figure` to ``path`` (PNG)."""
    figure(report).savefig(path)


def write_report(folder: str | Path, report: dict[str, Any]) -> Path:
    """Write report.md, report.json and report.png (:data:`REPORT_FILES`) into ``folder``; returns the markdown's
    path. In a bundle, the manifest's checksums then cover them too."""
    folder = Path(folder)
    md, js, png = (folder / name for name in REPORT_FILES)
    js.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md.write_text(markdown(report), encoding="utf-8")
    plot(report, png)
    if (folder / MANIFEST_NAME).is_file():
        update_manifest(folder, files=REPORT_FILES)
    return md


def add_ratios(results: dict[str, dict[str, Any]], threads: str, baseline: str | None = None) -> dict[str, Any]:
    """:func:`with_ratios` for every variant, against ``baseline`` or else its own backend's FP32 (see
    :func:`baseline_of`)."""
    out = {}
    for key, r in results.items():
        base = baseline if baseline in results else baseline_of(key, results)
        out[key] = with_ratios({key: r, base: results[base]}, base, threads)[key]
    return out
