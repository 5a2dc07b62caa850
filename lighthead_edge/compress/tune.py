"""``lighthead-edge tune``: search the RoI budget and which layers run INT8 on *this* CPU, and keep the fastest
bundle whose AP is within the budget.

    run = tune_checkpoint("model.pt", "bundle/", calib="frames/", settings=TuneSettings(val_json="val.json"))
    run.chosen   # Point(rois=100, precision="int8", ap=..., latency_ms=...)

For every RoI budget (``--rois``, the graph's static post-NMS RoI slots) it quantizes the checkpoint
(:func:`~lighthead_edge.compress.quantize.quantize_checkpoint`, latency-aware: the layers INT8 makes slower here stay
float) and measures COCO AP and latency of the FP32 and the INT8 graph. The reference is the FP32 graph at the
checkpoint's own budget. When the fastest INT8 point among the budgets whose FP32 is within the AP budget is over it,
that budget is quantized again with accuracy control (``max_drop``), which reverts the layers that cost the most AP
(it can give back what INT8 cost, not what a smaller RoI budget cost). The fastest point within
``max_drop`` of the reference wins, but points within ``tie`` (3%) of its latency count as equally fast and the one
of them with the highest AP is chosen (:func:`choose`): a few percent is the timing noise of a shared CPU, and
without the rule the pruned NEON model's search under the AVX2 cap took int8 @100 at 17.2 ms over int8 @300 at
17.3 ms, 0.6 AP points lower. The chosen bundle is written to ``out`` (atomically, like ``export``), with
``tune.md``, ``tune.json`` and ``tune.png`` (AP against latency, every point, the Pareto front and the choice).

Every point's latency comes from one interleaved schedule over all the budgets' bundles
(:func:`~lighthead_edge.measure.latencies`: blocks of runs cycling through every variant), run once the budgets are
quantized (that figure picks the budget accuracy control retries) and again with the accuracy-controlled point: a
slow spell of a shared CPU then hits every budget alike. Each quantize run's own figure stays in ``tune.json``
(``own_run_ms``): on a busy 2-vCPU host those moved FP32 by 1.35x between budgets that differ by a few percent.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lighthead_edge.compress.calibration import DEFAULT_SIZE, Selection
from lighthead_edge.compress.quantize import QuantizeSettings, quantize_checkpoint
from lighthead_edge.errors import ConfigError
from lighthead_edge.measure import BenchSettings, host_description, latencies
from lighthead_edge.runtime.bundle import Backend, load_bundle
from lighthead_edge.runtime.isa import ISAS

Log = Callable[[str], None]
DEFAULT_ROIS = (25, 50, 100, 200, 300)
TUNE_FILES = ("tune.md", "tune.json", "tune.png")
TIE = 0.03  # latencies this close to the fastest are within a shared CPU's noise (see the module docstring)


@dataclass(frozen=True)
class TuneSettings:
    """What ``tune`` searches and how it measures.

    Attributes:
        val_json: the COCO json that AP is measured on (required).
        backend: the engine to tune for (one: the point is to measure on the engine that will run it).
        rois: the RoI budgets to try; the checkpoint's own is always tried too (the reference).
        max_drop: the largest AP drop against the reference (absolute, 0.01 = 1 point).
        calib_size, selection: the calibration set.
        threads, runs: the latency figures' threads and timed runs.
        tie: points within this fraction of the fastest one's latency count as equally fast (see :func:`choose`).
        isa: the ISA OpenVINO's oneDNN kernels are capped at (``native``: none), set by the caller with
            :func:`~lighthead_edge.runtime.isa.cap_isa` before anything compiles: the search (latency-aware INT8
            included) then decides for that older CPU, and every timed bundle is checked to run under the cap.
    """

    val_json: str
    backend: Backend = Backend.OPENVINO
    rois: tuple[int, ...] = DEFAULT_ROIS
    max_drop: float = 0.01
    calib_size: int = DEFAULT_SIZE
    selection: Selection = Selection.UNIFORM
    threads: int = 2
    runs: int = 20
    isa: str = "native"
    tie: float = TIE

    def __post_init__(self) -> None:
        if self.isa not in ISAS:
            raise ConfigError(f"unknown --isa {self.isa!r}; choose one of {', '.join(ISAS)}")
        if self.isa != "native" and self.backend is not Backend.OPENVINO:
            raise ConfigError(f"--isa {self.isa} caps OpenVINO's oneDNN kernels; ONNX Runtime's MLAS kernels have "
                              "no such cap: tune --backend onnxruntime on the target CPU itself, "
                              "or drop --isa")  # fmt: skip
        if not self.rois or any(r < 1 for r in self.rois):
            raise ConfigError(f"--rois wants budgets >= 1, got {list(self.rois)}")
        if not 0 < self.max_drop <= 1:  # nan too
            raise ConfigError(f"--max-drop must be in (0, 1] (0.01 = 1 AP point), got {self.max_drop}")
        if not 0 <= self.tie < 1:  # nan too
            raise ConfigError(f"--tie must be in [0, 1) (0.03 = 3% of the fastest latency), got {self.tie}")


@dataclass
class Point:
    """One measured variant: its RoI budget, precision, what kept layers float, AP and latency (p50 ms)."""

    rois: int
    precision: str
    ap: float
    ap50: float
    latency_ms: float
    kept_float: list[str] = field(default_factory=list)
    accuracy_control: bool = False
    bundle: str = ""
    own_run_ms: float | None = None  # the quantize run's own figure, before the joint schedule replaced it

    @property
    def label(self) -> str:
        return f"{self.precision}{'+ac' if self.accuracy_control else ''} @{self.rois}"


@dataclass
class TuneRun:
    bundle: Path
    chosen: Point
    reference: Point
    points: list[Point]
    report: Path


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _points(run: Any, rois: int, backend: Backend, threads: int, accuracy_control: bool) -> list[Point]:
    out = []
    for precision in ("fp32", "int8"):
        if accuracy_control and precision == "fp32":
            continue
        figures = run.results[f"{backend.value}/{precision}"]
        kept = run.quantization.get(f"{backend.value}/int8", {}).get("kept_float", []) if precision == "int8" else []
        out.append(Point(rois, precision, figures["coco"]["AP"], figures["coco"]["AP50"],
                         figures["latency_ms"][str(threads)]["p50"], [k["name"] for k in kept], accuracy_control,
                         str(run.bundle)))  # fmt: skip
    return out


def _checkpoint_rois(checkpoint: Path) -> int:
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    return int(model.config.rpn_post_nms_top_n_test)


def choose(points: Sequence[Point], reference: Point, max_drop: float, tie: float) -> tuple[Point, Point]:
    """-> (chosen, fastest): ``fastest`` is the quickest point within ``max_drop`` of the reference's AP; ``chosen``
    the highest-AP point within ``max_drop`` whose latency is within ``tie`` of the fastest's (ties on AP: the
    quicker). The reference itself is always within the budget, so there is always a choice."""
    within = [p for p in points if reference.ap - p.ap <= max_drop]
    fastest = min(within, key=lambda p: p.latency_ms)
    tied = [p for p in within if p.latency_ms <= fastest.latency_ms * (1 + tie)]
    return max(tied, key=lambda p: (p.ap, -p.latency_ms)), fastest


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both AP and latency, fastest first."""
    front, best_ap = [], float("-inf")
    for p in sorted(points, key=lambda p: (p.latency_ms, -p.ap)):
        if p.ap > best_ap:
            front.append(p)
            best_ap = p.ap
    return front


def tune_checkpoint(
    checkpoint: str | Path, out: str | Path, *, calib: str | Path, settings: TuneSettings, log: Log = _stderr
) -> TuneRun:
    """Search (see the module docstring) and write the chosen bundle to ``out`` with its tune report."""
    from lighthead_edge.export.bundle import atomic_directory, check_target

    s, checkpoint, out = settings, Path(checkpoint), Path(out)
    check_target(out, {"CHECKPOINT": checkpoint, "--calib": calib, "--val": s.val_json})
    own = _checkpoint_rois(checkpoint)
    budgets = sorted(set(s.rois) | {own})
    log(f"tuning {checkpoint.name} for {s.backend.value} on {search_host(s)}: RoI budgets {budgets}, "
        f"AP budget {s.max_drop} against FP32 at {own} RoIs")  # fmt: skip
    bench = BenchSettings(threads=(s.threads,), runs=s.runs, val_json=s.val_json, isa=s.isa)
    base = QuantizeSettings(backends=(s.backend,), calib_size=s.calib_size, selection=s.selection,
                            val_json=s.val_json, bench=bench)  # fmt: skip
    with atomic_directory(out, log) as tmp:
        work = tmp / ".tune"
        points: list[Point] = []
        for k, rois in enumerate(budgets, 1):
            log(f"[{k}/{len(budgets)}] {rois} RoIs: quantizing and measuring")
            run = quantize_checkpoint(checkpoint, work / f"rois_{rois}", calib=calib,
                                      settings=replace(base, rois=rois),
                                      log=lambda m: None)  # fmt: skip
            points += _points(run, rois, s.backend, s.threads, False)
            log("    " + "; ".join(f"{p.precision} AP {p.ap:.4f} {p.latency_ms:.1f} ms" for p in points[-2:]))
        _time_together(points, s, bench, log)
        reference = next(p for p in points if p.rois == own and p.precision == "fp32")
        within = lambda p: reference.ap - p.ap <= s.max_drop  # noqa: E731
        fp32_within = {p.rois for p in points if p.precision == "fp32" and within(p)}
        # accuracy control can give back what INT8 cost, not what a smaller RoI budget cost: only where FP32 is in
        int8 = [p for p in points if p.precision == "int8" and p.rois in fp32_within]
        int8.sort(key=lambda p: p.latency_ms)
        if int8 and not within(int8[0]):
            rois = int8[0].rois
            log(f"the fastest INT8 point whose FP32 is within budget ({rois} RoIs) drops AP by "
                f"{reference.ap - int8[0].ap:.4f}: quantizing it again with accuracy control")  # fmt: skip
            run = quantize_checkpoint(checkpoint, work / f"rois_{rois}_ac", calib=calib,
                                      settings=replace(base, rois=rois, max_drop=s.max_drop),
                                      log=lambda m: None)  # fmt: skip
            points += _points(run, rois, s.backend, s.threads, True)
            _time_together(points, s, bench, log)
        chosen, fastest = choose(points, reference, s.max_drop, s.tie)
        if chosen is not fastest:
            log(f"{chosen.label} is within {s.tie:.0%} of the fastest point within budget ({fastest.label}, "
                f"{fastest.latency_ms:.1f} ms) at {chosen.ap - fastest.ap:+.4f} AP: taking it")  # fmt: skip
        log(f"chosen: {chosen.label}: AP {chosen.ap:.4f} ({chosen.ap - reference.ap:+.4f}), {chosen.latency_ms:.1f} "
            f"ms ({chosen.latency_ms / reference.latency_ms:.2f}x the reference)")  # fmt: skip
        for item in Path(chosen.bundle).iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(work)
        report = _write_report(tmp, checkpoint, s, bench, reference, chosen, points)
    return TuneRun(out, chosen, reference, points, out / report.name)


def _time_together(points: list[Point], s: TuneSettings, bench: BenchSettings, log: Log) -> None:
    """Time every point's graph in one interleaved schedule and make that its latency (see the module docstring)."""
    variants = {}
    for p in points:
        bundle = load_bundle(p.bundle)
        variants[p.label] = (bundle, bundle.artifact(s.backend, p.precision))
    timed = latencies(variants, bench)
    for p in points:
        if p.own_run_ms is None:
            p.own_run_ms = p.latency_ms
        p.latency_ms = timed[p.label][str(s.threads)]["p50"]
    log(f"    {len(points)} points timed together: " + ", ".join(f"{p.label} {p.latency_ms:.1f}" for p in points))


def _write_report(
    root: Path, checkpoint: Path, s: TuneSettings, bench: BenchSettings, reference: Point, chosen: Point,
    points: list[Point],
) -> Path:
    from lighthead_edge.runtime.bundle import file_records, read_manifest, write_manifest

    front = pareto(points)
    _, fastest = choose(points, reference, s.max_drop, s.tie)
    data = {"model": checkpoint.name, "host": search_host(s), "backend": s.backend.value, "threads": s.threads,
            "val_data": s.val_json, "max_drop": s.max_drop, "settings": _settings(s),
            "reference": _plain(reference), "chosen": _plain(chosen),
            "points": [_plain(p) for p in points], "pareto": [p.label for p in front],
            "fastest_within_budget": fastest.label}  # fmt: skip
    (root / "tune.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    lines = [f"# tune: {checkpoint.name} on {data['host']}, {s.backend.value}, {s.threads} threads", "",
             f"Reference: FP32 at {reference.rois} RoIs, AP {reference.ap:.4f}, {reference.latency_ms:.1f} ms. "
             f"Budget: AP drop <= {s.max_drop}. Points within {s.tie:.0%} of the fastest one within budget "
             f"({fastest.label}, {fastest.latency_ms:.1f} ms) count as equally fast; the highest AP of them wins.", "",
             f"**Chosen: {chosen.label}**: AP {chosen.ap:.4f} ({chosen.ap - reference.ap:+.4f}), "
             f"{chosen.latency_ms:.1f} ms ({chosen.latency_ms / reference.latency_ms:.2f}x the reference)", "",
             "| variant | RoIs | AP | AP50 | dAP | p50 ms | x reference | layers kept float | Pareto |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in sorted(points, key=lambda p: (p.rois, p.precision, p.accuracy_control)):
        lines.append(f"| {p.label} | {p.rois} | {p.ap:.4f} | {p.ap50:.4f} | {p.ap - reference.ap:+.4f} | "
                     f"{p.latency_ms:.1f} | {p.latency_ms / reference.latency_ms:.2f} | {len(p.kept_float)} | "
                     f"{'yes' if p in front else ''} |")  # fmt: skip
    lines += ["", f"Latencies: every point timed in one interleaved schedule ({bench.runs} runs each, in "
              f"{bench.rounds} rotating blocks) after every budget was built; each quantize run's own "
              "figure is `own_run_ms` in tune.json."]  # fmt: skip
    (root / "tune.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(root / "tune.png", reference, chosen, points, front, s.max_drop)
    manifest = read_manifest(root)
    manifest["files"].update(file_records(root, TUNE_FILES))
    manifest["tune"] = {"chosen": _plain(chosen, bundle=False), "reference": _plain(reference, bundle=False),
                        "max_drop": s.max_drop, "settings": _settings(s), "report": "tune.md"}  # fmt: skip
    write_manifest(root, manifest)
    return root / "tune.md"


def search_host(s: TuneSettings) -> str:
    """The host, and the ISA cap when there is one: every figure of a capped search is of the capped kernels."""
    capped = "" if s.isa == "native" else f", OpenVINO's oneDNN kernels capped at --isa {s.isa}"
    return host_description() + capped


def _settings(s: TuneSettings) -> dict[str, Any]:
    """Every setting the search used, as JSON values."""
    return {**asdict(s), "backend": s.backend.value, "selection": s.selection.value, "rois": list(s.rois)}


def _plain(p: Point, bundle: bool = True) -> dict[str, Any]:
    d = asdict(p)
    d.pop("bundle")
    d["label"] = p.label
    return d if bundle else {k: v for k, v in d.items() if k != "kept_float"}


def _plot(path: Path, reference: Point, chosen: Point, points: list[Point], front: list[Point], max_drop: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for precision, marker in (("fp32", "o"), ("int8", "s")):
        sel = [p for p in points if p.precision == precision]
        ax.scatter([p.latency_ms for p in sel], [p.ap for p in sel], marker=marker, label=precision.upper())
        for p in sel:
            ax.annotate(str(p.rois) + ("+ac" if p.accuracy_control else ""), (p.latency_ms, p.ap), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.plot([p.latency_ms for p in front], [p.ap for p in front], "k--", lw=0.8, label="Pareto front")
    ax.axhline(reference.ap - max_drop, color="grey", lw=0.8, ls=":", label=f"AP budget (-{max_drop})")
    ax.scatter([chosen.latency_ms], [chosen.ap], s=160, facecolors="none", edgecolors="red", label="chosen")
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("COCO AP")
    ax.set_title("tune: AP against latency, labelled by RoI budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
