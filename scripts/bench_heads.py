"""Head cost on a CPU: Light-Head R-CNN's light head against R-FCN's and Faster R-CNN's, on the same features.

    python scripts/bench_heads.py --quick                      # 1-3 min: classes 2,80 x RoIs 50,300, onnxruntime
    python scripts/bench_heads.py                              # the full grid: for a quiet machine
    python scripts/bench_heads.py --classes 2,80 --rois 50,100,300,1000 --engines onnxruntime,openvino

The paper (arXiv 1711.07264) argues that Faster R-CNN's head grows with the RoI count (two fc layers per RoI), R-FCN's
with the class count ((C + 1) * p * p score maps) and the light head with neither (a thin map of alpha * p * p = 490
channels, one fc-2048). This script measures that claim where this project runs: each head of
:mod:`lighthead_edge.modeling.reference_heads` on MobileNetV2's stride-16 features of a 512x512 input ([1, 96, 32, 32]),
for every #classes x #RoIs, exported to ONNX (features and RoIs as graph inputs, static shapes; the PS heads swapped
to the exportable PS-RoIAlign and made bin-major exactly as the detector's export does) and timed in ONNX Runtime
and/or OpenVINO, FP32 and INT8, all variants of one (#classes, #RoIs) cell interleaved
(:func:`lighthead_edge.measure.interleaved_timings`), so that the ratios against the light head come from the same
stretch of time. The light head and Faster R-CNN's RoIAlign read 2 x 2 bilinear samples per bin (the paper's
PS-RoIAlign), R-FCN 1 (``--rfcn-sampling``): R-FCN's own PS-RoI pooling averages each bin, which on a stride-16 map
is less than a feature pixel for most RoIs, so one sample is the closer (and cheaper) stand-in.

INT8: ONNX Runtime QDQ (per-channel s8 weights with reduce_range, u8 activations, the RoI coordinate arithmetic kept
in float: the project's settings), OpenVINO through ``nncf.quantize`` on the IR read from the ONNX file (the
project's settings and ignored scope); both calibrated on random features and RoIs.

Writes ``--out`` (default runs/heads): heads.md (host, ISA, one table per engine/precision: median ms per head and
its ratio to the light head; GMAC per head), heads.json (every figure) and heads.png (ms against #RoIs, a line per
head, a panel per engine/precision and #classes). Every exported FP32 graph is checked against its torch module and
every INT8 one against its FP32 graph (max abs error, cosine), and the figures are recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lighthead_edge.compress.quantize_ort import OrtQuantSettings, fold_initializer_identities
from lighthead_edge.compress.quantize_ov import OvQuantSettings, quantize_ir
from lighthead_edge.export.graph import float_node_names, to_bin_major
from lighthead_edge.export.onnx import check_onnx
from lighthead_edge.export.swap import swap_modules
from lighthead_edge.measure import host_description, interleaved_timings
from lighthead_edge.modeling.reference_heads import HeadKind, build_head
from lighthead_edge.ops.ps_roi_align import PSRoIAlign
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
HEADS = (HeadKind.LIGHT, HeadKind.RFCN, HeadKind.FASTER)
LABELS = {HeadKind.LIGHT: "light head", HeadKind.RFCN: "R-FCN", HeadKind.FASTER: "Faster R-CNN (2fc)"}
INPUT_NAMES = ("features", "rois")
OUTPUT_NAMES = ("cls_logits", "box_deltas")
BACKBONE_CHANNELS = 96  # MobileNetV2 features[0:14], stride 16 (lighthead_edge/modeling/backbones.py)
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to measure; see ``--help``."""

    classes: tuple[int, ...] = (1, 2, 20, 80)
    rois: tuple[int, ...] = (50, 100, 300, 1000)
    engines: tuple[str, ...] = ENGINES
    precisions: tuple[str, ...] = PRECISIONS
    threads: int = 2
    runs: int = 20
    warmup: int = 2
    rounds: int = 4
    calib: int = 8
    head_size: str = "S"
    rfcn_sampling: int = 1
    in_channels: int = BACKBONE_CHANNELS
    image_size: int = 512
    seed: int = 0

    @property
    def feature_size(self) -> int:
        return self.image_size // 16


QUICK = Grid(classes=(2, 80), rois=(50, 300), engines=("onnxruntime",), runs=12, warmup=1, rounds=3, calib=4)


# --------------------------------------------------------------------------------------------------------- inputs
def random_rois(k: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [K, 5]: boxes on image 0, inside the image, 16 to 256 pixels a side (proposal-like sizes)."""
    wh = rng.uniform(16.0, min(256.0, image_size), (k, 2))
    xy = rng.uniform(0.0, 1.0, (k, 2)) * (image_size - wh)
    return np.concatenate([np.zeros((k, 1)), xy, xy + wh], axis=1).astype(np.float32)


def random_inputs(grid: Grid, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One feed: features ~ N(0, 1) (MobileNetV2's last block ends in BN, no activation) and K RoIs."""
    shape = (1, grid.in_channels, grid.feature_size, grid.feature_size)
    return {"features": rng.standard_normal(shape, dtype=np.float32), "rois": random_rois(k, grid.image_size, rng)}


# --------------------------------------------------------------------------------------------------------- export
def export_form(head: nn.Module, engine: str) -> nn.Module:
    """The head as the detector's export builds its light head (``build_export_model``): a copy with PS-RoIAlign
    swapped for the exportable grid-sample form (one image, RoIs inside it), its sample grid in the engine's faster
    form, and the PS maps reordered bin-major (exact rewrites)."""
    factory = partial(PSRoIAlignExport.from_module, method="grid_sample", rois_inside_single_image=True)
    swapped = swap_modules(head, {PSRoIAlign: factory}).eval()
    for module in swapped.modules():
        if isinstance(module, PSRoIAlignExport):
            module.geometry = dataclasses.replace(module.geometry, grid_by_broadcast=engine == "openvino")
    if hasattr(swapped, "thin_head"):
        to_bin_major(swapped)
    elif hasattr(swapped, "to_bin_major"):
        swapped.to_bin_major()
    return swapped


def export_head(module: nn.Module, feeds: dict[str, np.ndarray], path: Path) -> list[np.ndarray]:
    """Trace ``module`` into ``path`` (legacy exporter, opset 17, static shapes, standard ops only) -> its torch
    outputs on ``feeds``."""
    args = tuple(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and the tracer's static-shape notes
        with torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), do_constant_folding=True)  # fmt: skip
            outputs = [t.numpy() for t in module(*args)]
    import onnx

    check_onnx(onnx.load(str(path)))
    return outputs


# ------------------------------------------------------------------------------------------------------ quantize
class _Reader:
    """``CalibrationDataReader`` over feeds of several inputs (an ``onnxruntime.quantization`` duck type)."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._items = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_onnxruntime(src: Path, dst: Path, calib: Sequence[dict[str, np.ndarray]]) -> None:
    """QDQ INT8 with the project's ONNX Runtime settings (:class:`OrtQuantSettings`: per-channel s8 weights with
    reduce_range, u8 activations, MinMax), the PS-RoIAlign coordinate and weighted-sum scopes left in float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    s = OrtQuantSettings()
    model = fold_initializer_identities(onnx.load(str(src)))
    prepared = dst.with_suffix(".prepared.onnx")
    onnx.save(model, str(prepared))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static advises pre-processing on the root logger, once per graph
    try:
        quantize_static(
            str(prepared), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(s.op_types), per_channel=s.per_channel, reduce_range=s.reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=float_node_names(model),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )  # fmt: skip
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)


def quantize_openvino(src: Path, dst: Path, calib: Sequence[dict[str, np.ndarray]]) -> None:
    """``nncf.quantize`` of the IR read from the ONNX file ``src``, with the project's settings
    (:class:`OvQuantSettings`: performance preset, overflow fix, the float scope ignored) -> ``dst`` (.xml)."""
    quantize_ir(src, dst, list(calib), OvQuantSettings())


# -------------------------------------------------------------------------------------------------------- engines
Runner = Callable[[], list[np.ndarray]]


def onnxruntime_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    """A session of ``threads`` intra-op threads that don't spin: ORT's threads otherwise busy-wait for a while
    after each run, and on a 2-core host that stole the CPU from whichever variant the interleaved schedule ran next
    (the Faster R-CNN head measured 84 ms interleaved against 32 ms alone; without spinning 20 ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(list(OUTPUT_NAMES), feeds)


def openvino_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    """As the runtime's OpenVINO backend compiles a bundle: LATENCY hint, f32 inference precision (quantized layers
    still run in int8), ``threads`` inference threads."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in OUTPUT_NAMES]

    def run() -> list[np.ndarray]:
        request.infer(feeds)
        return [np.array(request.get_tensor(out).data) for out in outputs]

    return run


RUNNERS: dict[str, Callable[[Path, dict[str, np.ndarray], int], Runner]] = {
    "onnxruntime": onnxruntime_runner, "openvino": openvino_runner,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------- cost
def head_macs(kind: HeadKind, *, in_channels: int, num_classes: int, rois: int, feature_size: int,
              head_size: str = "S") -> int:  # fmt: skip
    """Multiply-accumulates of one head's convs and fcs (pooling and voting excluded), for ``rois`` RoIs."""
    from lighthead_edge.config import ModelConfig

    c = ModelConfig(num_classes=num_classes, head_size=head_size)
    p2, hw, cls_box = c.pool_size**2, feature_size**2, num_classes + 1 + 4
    if kind is HeadKind.LIGHT:
        mid, k = c.head_mid_channels, c.kernel_size
        thin = 2 * (in_channels * mid * k + mid * c.thin_channels * k) * hw
        return thin + rois * (c.thin_channels * c.fc_dim + c.fc_dim * cls_box)
    if kind is HeadKind.RFCN:
        return in_channels * cls_box * p2 * hw
    fc = 1024
    return rois * (in_channels * p2 * fc + fc * fc + fc * cls_box)


# ----------------------------------------------------------------------------------------------------------- cell
@dataclasses.dataclass
class Variant:
    """One timed graph: a head on an engine at a precision, its runner and how it compares with its reference."""

    head: HeadKind
    engine: str
    precision: str
    run: Runner
    check: dict[str, float]

    @property
    def key(self) -> str:
        return f"{self.head.value}/{self.engine}/{self.precision}"


def _errors(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> dict[str, float]:
    a = np.concatenate([np.asarray(x, np.float64).ravel() for x in actual])
    e = np.concatenate([np.asarray(x, np.float64).ravel() for x in expected])
    cosine = float(a @ e / max(np.linalg.norm(a) * np.linalg.norm(e), 1e-30))
    return {"max_abs_err": float(np.abs(a - e).max()), "cosine": round(cosine, 6)}


def build_variants(grid: Grid, num_classes: int, k: int, folder: Path, log: Log) -> list[Variant]:
    """Every head of one cell exported (and quantized) for every engine and precision of ``grid``, each checked:
    FP32 against its torch module, INT8 against its FP32 graph."""
    rng = np.random.default_rng(grid.seed)
    feeds = random_inputs(grid, k, rng)
    calib = [random_inputs(grid, k, rng) for _ in range(grid.calib)]
    variants = []
    for kind in HEADS:
        torch.manual_seed(grid.seed)
        sampling = grid.rfcn_sampling if kind is HeadKind.RFCN else 2
        head = build_head(kind, in_channels=grid.in_channels, num_classes=num_classes, head_size=grid.head_size,
                          sampling_ratio=sampling)  # fmt: skip
        for engine in grid.engines:
            fp32 = folder / f"{kind.value}_{engine}_c{num_classes}_r{k}.onnx"
            expected = export_head(export_form(head, engine), feeds, fp32)
            run = RUNNERS[engine](fp32, feeds, grid.threads)
            reference = run()
            if "fp32" in grid.precisions:
                variants.append(Variant(kind, engine, "fp32", run, _errors(reference, expected)))
            if "int8" in grid.precisions:
                int8 = fp32.with_suffix(".int8.onnx" if engine == "onnxruntime" else ".int8.xml")
                (quantize_onnxruntime if engine == "onnxruntime" else quantize_openvino)(fp32, int8, calib)
                run8 = RUNNERS[engine](int8, feeds, grid.threads)
                variants.append(Variant(kind, engine, "int8", run8, _errors(run8(), reference)))
    log(f"  C={num_classes} K={k}: {len(variants)} graphs exported, checked: "
        + ", ".join(f"{v.key} {v.check['max_abs_err']:.1e}" for v in variants if v.precision == "fp32"))  # fmt: skip
    return variants


def measure_cell(grid: Grid, num_classes: int, k: int, folder: Path, log: Log) -> list[dict[str, Any]]:
    """The rows of one (#classes, #RoIs) cell: every variant timed in one interleaved schedule."""
    variants = build_variants(grid, num_classes, k, folder, log)
    timed = interleaved_timings({v.key: v.run for v in variants}, grid.runs, grid.warmup, grid.rounds)
    rows = []
    for v in variants:
        light = timed[f"{HeadKind.LIGHT.value}/{v.engine}/{v.precision}"]["p50"]
        macs = head_macs(v.head, in_channels=grid.in_channels, num_classes=num_classes, rois=k,
                         feature_size=grid.feature_size, head_size=grid.head_size)  # fmt: skip
        rows.append({"classes": num_classes, "rois": k, "head": v.head.value, "engine": v.engine,
                     "precision": v.precision, "latency_ms": timed[v.key], "ratio_to_light": round(
                         timed[v.key]["p50"] / light, 3), "gmac": round(macs / 1e9, 4), "check": v.check})  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------------------- report
def markdown(rows: list[dict[str, Any]], grid: Grid, host: str, seconds: float, command: str) -> str:
    """heads.md: one table per engine/precision (median ms, ratio to the light head), then GMAC per head."""
    lines = [f"# Head cost: light head vs R-FCN vs Faster R-CNN ({command})", "",
             f"Host: {host}; {grid.threads} thread(s); median of {grid.runs} runs per variant, every variant of a "
             f"cell interleaved in {grid.rounds} rounds; features [1, {grid.in_channels}, {grid.feature_size}, "
             f"{grid.feature_size}] (MobileNetV2 stride 16, {grid.image_size}x{grid.image_size} input); light head "
             f"{grid.head_size} (PS-RoIAlign 2x2 samples per bin), R-FCN {grid.rfcn_sampling}x{grid.rfcn_sampling}, "
             f"Faster R-CNN RoIAlign 2x2; took {seconds / 60:.1f} min.", "",
             "ratio = the head's median / the light head's median in the same cell (> 1: the light head is "
             "faster).", ""]  # fmt: skip
    for engine in grid.engines:
        for precision in grid.precisions:
            sub = [r for r in rows if r["engine"] == engine and r["precision"] == precision]
            if not sub:
                continue
            lines += [f"## {engine} {precision.upper()}", "",
                      "| classes | RoIs | light ms | R-FCN ms | R-FCN / light | Faster ms | Faster / light |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
            for c in grid.classes:
                for k in grid.rois:
                    by = {r["head"]: r for r in sub if r["classes"] == c and r["rois"] == k}
                    if len(by) < len(HEADS):
                        continue
                    ms = {h: by[h.value]["latency_ms"]["p50"] for h in HEADS}
                    lines.append(f"| {c} | {k} | {ms[HeadKind.LIGHT]:.2f} | {ms[HeadKind.RFCN]:.2f} | "
                                 f"{by['rfcn']['ratio_to_light']:.2f} | {ms[HeadKind.FASTER]:.2f} | "
                                 f"{by['faster']['ratio_to_light']:.2f} |")  # fmt: skip
            lines.append("")
    lines += ["## GMAC per head (convs and fcs)", "", "| classes | RoIs | light | R-FCN | Faster |",
              "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for c in grid.classes:
        for k in grid.rois:
            by = {r["head"]: r["gmac"] for r in rows if r["classes"] == c and r["rois"] == k}
            if len(by) == len(HEADS):
                lines.append(f"| {c} | {k} | {by['light']:.3f} | {by['rfcn']:.3f} | {by['faster']:.3f} |")
    worst = max((r["check"]["max_abs_err"] for r in rows if r["precision"] == "fp32"), default=float("nan"))
    cos = min((r["check"]["cosine"] for r in rows if r["precision"] == "int8"), default=float("nan"))
    lines += ["", f"Checks: FP32 graphs against torch, max abs error {worst:.1e}; INT8 against FP32, lowest cosine "
              f"{cos:.4f} (random weights and inputs).", ""]  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], grid: Grid, path: Path, host: str) -> None:
    """heads.png: ms against #RoIs (log x), a line per head, a panel per (engine/precision, #classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(e, p) for e in grid.engines for p in grid.precisions]
    fig, axes = plt.subplots(len(panels), len(grid.classes), figsize=(3.2 * len(grid.classes), 2.8 * len(panels)),
                             squeeze=False, sharex=True)  # fmt: skip
    for i, (engine, precision) in enumerate(panels):
        for j, c in enumerate(grid.classes):
            ax = axes[i][j]
            for kind in HEADS:
                pts = sorted((r["rois"], r["latency_ms"]["p50"]) for r in rows if r["head"] == kind.value
                             and r["engine"] == engine and r["precision"] == precision and r["classes"] == c)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=LABELS[kind])
            ax.set_xscale("log")
            ax.set_xticks(grid.rois, [str(k) for k in grid.rois])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.set_title(f"{engine} {precision.upper()}, {c} classes", fontsize=9)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("median ms")
            if i == len(panels) - 1:
                ax.set_xlabel("RoIs")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"R-CNN head latency, {grid.threads} threads: {host}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows: list[dict[str, Any]], grid: Grid, out: Path, seconds: float, command: str) -> Path:
    host = host_description()
    out.mkdir(parents=True, exist_ok=True)
    record = {"host": host, "command": command, "grid": dataclasses.asdict(grid), "seconds": round(seconds, 1),
              "rows": rows}  # fmt: skip
    (out / "heads.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    (out / "heads.md").write_text(markdown(rows, grid, host, seconds, command), encoding="utf-8")
    plot(rows, grid, out / "heads.png", host)
    return out / "heads.md"


# ----------------------------------------------------------------------------------------------------------- main
def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers >= 1, comma-separated") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers >= 1, comma-separated")
    return values


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}, comma-separated")
        return tuple(n for n in choices if n in names)

    return parse


def parse_args(argv: Sequence[str] | None = None) -> tuple[Grid, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="classes 2,80 x RoIs 50,300, onnxruntime, FP32+INT8, 8 runs (the other options still "
                             "override it)")  # fmt: skip
    parser.add_argument("--classes", type=_ints, help="numbers of classes [1,2,20,80]")
    parser.add_argument("--rois", type=_ints, help="numbers of RoIs [50,100,300,1000]")
    parser.add_argument("--engines", type=_names(ENGINES), help="onnxruntime,openvino [both]")
    parser.add_argument("--precisions", type=_names(PRECISIONS), help="fp32,int8 [both]")
    parser.add_argument("--threads", type=int, choices=range(1, 257), metavar="N", help="inference threads [2]")
    parser.add_argument("--runs", type=int, choices=range(1, 100_001), metavar="N", help="timed runs per variant [20]")
    parser.add_argument("--calib", type=int, choices=range(1, 1001), metavar="N", help="calibration feeds [8]")
    parser.add_argument("--head-size", choices=["S", "L"], help="the light head's C_mid: S 64, L 256 [S]")
    parser.add_argument("--rfcn-sampling", type=int, choices=(1, 2), help="R-FCN's samples per bin and axis: 1 is "
                        "near its PS-RoI average pooling on a stride-16 map, 2 the light head's PS-RoIAlign [1]")
    parser.add_argument("--out", type=Path, default=Path("runs/heads"), help="report folder [runs/heads]")
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else Grid()
    given = {"classes": args.classes, "rois": args.rois, "engines": args.engines, "precisions": args.precisions,
             "threads": args.threads, "runs": args.runs, "calib": args.calib, "head_size": args.head_size,
             "rfcn_sampling": args.rfcn_sampling}  # fmt: skip
    return dataclasses.replace(grid, **{k: v for k, v in given.items() if v is not None}), args.out


def run(grid: Grid, out: Path, log: Log, command: str) -> Path:
    """Measure every cell of ``grid`` and write the report to ``out`` -> heads.md."""
    log(f"host: {host_description()}; {len(grid.classes) * len(grid.rois)} cells x {len(HEADS)} heads x "
        f"{'/'.join(grid.engines)} x {'/'.join(grid.precisions)}, {grid.threads} thread(s)")  # fmt: skip
    torch.set_num_threads(grid.threads)
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="bench_heads.") as tmp:
        for c in grid.classes:
            for k in grid.rois:
                folder = Path(tmp) / f"c{c}_r{k}"
                folder.mkdir()
                cell = measure_cell(grid, c, k, folder, log)
                log(f"  C={c} K={k}: " + ", ".join(f"{r['head']}/{r['engine']}/{r['precision']} "
                                                   f"{r['latency_ms']['p50']:.1f} ms" for r in cell))  # fmt: skip
                rows += cell
    return write_report(rows, grid, out, time.perf_counter() - start, command)


def main(argv: Sequence[str] | None = None) -> int:
    grid, out = parse_args(argv)
    command = " ".join(["bench_heads.py", *(sys.argv[1:] if argv is None else argv)])
    report = run(grid, out, lambda m: print(m, file=sys.stderr, flush=True), command)
    print(report.read_text(encoding="utf-8"))
    print(f"report: {report} (+ heads.json, heads.png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
