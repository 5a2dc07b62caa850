"""``lighthead-edge quantize``: checkpoint -> (prune) -> FP32 bundle -> INT8 artifacts -> measurements -> report.

    run = quantize_checkpoint("model.pt", "bundle/", calib="frames/", settings=QuantizeSettings(val_json="val.json"))
    run.bundle, run.report  # the bundle folder (FP32 and INT8 artifacts, manifest) and its report.md

The bundle is built in a hidden sibling folder and renamed into place when complete, like ``export``. The INT8
artifacts are ``model_int8.onnx`` (onnxruntime) and ``model_int8.xml/.bin`` (OpenVINO), listed in the manifest with
precision ``int8`` and their checksums, so :class:`~lighthead_edge.runtime.detector.Detector` loads them with
``precision="int8"``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from lighthead_edge.compress.bench import BenchSettings, measure_bundle
from lighthead_edge.compress.calibration import DEFAULT_SIZE, Selection, calibration_set_for_bundle
from lighthead_edge.compress.quantize_ort import OrtQuantSettings
from lighthead_edge.compress.quantize_ov import OvQuantSettings
from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.bundle import (
    Backend,
    Bundle,
    Precision,
    artifact_entry,
    artifact_files,
    load_bundle,
    update_manifest,
)

Log = Callable[[str], None]


def parse_backends(text: str) -> tuple[Backend, ...]:
    """``openvino`` | ``onnxruntime`` | ``both`` -> backends."""
    if text == "both":
        return (Backend.ONNXRUNTIME, Backend.OPENVINO)
    try:
        return (Backend(text),)
    except ValueError:
        raise ConfigError(f"unknown backend {text!r}; choose openvino, onnxruntime or both") from None


class OrtRanges(str, Enum):
    """How ONNX Runtime INT8 sets activation ranges (``quantize --ort-ranges``).

    ``minmax`` takes the calibration extremes, ``averaged`` averages each image's min/max (``CalibMovingAverage``).
    Neither wins everywhere: measured AP drops against FP32, extremes -> averaged, were 1.03 -> 0.76 points on NEON's
    held-out split, 0.49 -> 0.22 on the synthetic model and 1.12 -> 1.26 on the pruned synthetic model. ``auto``
    therefore quantizes both ways when there is a val set and keeps the one with the higher AP (``minmax`` on a tie or
    without a val set). When neither is within ``--max-drop``, ``auto`` takes ``minmax``: accuracy control's layer
    search got within 0.5 points with 8 of 49 layers in float from it on both NEON and the pruned synthetic model,
    against 32 and 49 of 49 from ``averaged``.
    """

    AUTO = "auto"
    MINMAX = "minmax"
    AVERAGED = "averaged"


@dataclass(frozen=True)
class QuantizeSettings:
    """Everything :func:`quantize_checkpoint` does besides the calibration source.

    Attributes:
        backends: which INT8 artifacts to make.
        calib_size, selection: calibration set size and how it is chosen.
        val_json: COCO json: AP/AP50 per variant, and the metric of accuracy control.
        max_drop: with ``val_json``, the largest AP drop (absolute, 0.01 = 1 point) accuracy control may leave.
        prune_ratio, train_json, finetune_epochs: prune the model first (:func:`prune_checkpoint`).
        bench: what the report measures.
        ort_ranges: ONNX Runtime activation ranges (:class:`OrtRanges`); it sets ``ort.moving_average``.
        keep_float: layers to keep in float on every backend, as substrings of their node names (``--keep-float``),
            e.g. ``roi_heads/head/fc/`` for the fc-2048.
        ort, ov: the backends' quantizer settings.
    """

    backends: tuple[Backend, ...] = (Backend.ONNXRUNTIME, Backend.OPENVINO)
    calib_size: int = DEFAULT_SIZE
    selection: Selection = Selection.UNIFORM
    val_json: str | None = None
    max_drop: float | None = None
    prune_ratio: float | None = None
    train_json: str | None = None
    finetune_epochs: int = 0
    bench: BenchSettings = field(default_factory=BenchSettings)
    ort_ranges: OrtRanges = OrtRanges.AUTO
    keep_float: tuple[str, ...] = ()
    ort: OrtQuantSettings = field(default_factory=OrtQuantSettings)
    ov: OvQuantSettings = field(default_factory=OvQuantSettings)

    def __post_init__(self) -> None:
        if self.max_drop is not None and not self.val_json:
            raise ConfigError("--max-drop needs --val: accuracy control measures COCO AP on the validation set")
        if self.prune_ratio is not None and not self.train_json:
            raise ConfigError("--prune needs --data train.json (BN re-estimation and fine-tuning run on it)")
        if self.prune_ratio is not None and not 0 < self.prune_ratio < 1:
            raise ConfigError(f"--prune must be between 0 and 1, got {self.prune_ratio}")
        if self.val_json and self.bench.val_json != self.val_json:
            object.__setattr__(self, "bench", BenchSettings(**{**self.bench.__dict__, "val_json": self.val_json}))


@dataclass
class QuantizeRun:
    """Where the bundle and its report went, the measured figures, and per INT8 artifact what stayed float."""

    bundle: Path
    report: Path
    results: dict[str, dict[str, Any]]
    quantization: dict[str, dict[str, Any]]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _prune(checkpoint: Path, work: Path, s: QuantizeSettings, log: Log) -> Path:
    from lighthead_edge.compress.pipeline import PruneSettings, prune_checkpoint
    from lighthead_edge.config import TrainConfig

    out = work / f"{checkpoint.stem}_pruned.pt"
    cfg = TrainConfig(epochs=s.finetune_epochs, threads=max(s.bench.threads))
    prune_checkpoint(checkpoint, out, train_json=s.train_json, settings=PruneSettings(ratio=s.prune_ratio),
                     train_config=cfg, progress_bar=False, log=log)  # fmt: skip
    return out


def quantize_checkpoint(
    checkpoint: str | Path, out: str | Path, *, calib: str | Path, settings: QuantizeSettings | None = None,
    log: Log = _stderr,
) -> QuantizeRun:  # fmt: skip
    """Export ``checkpoint`` to the bundle ``out`` with INT8 artifacts beside the FP32 ones, and write its report."""
    from lighthead_edge.export.bundle import ExportFormat, ExportSettings, atomic_directory, check_target, export_bundle
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    s = settings or QuantizeSettings()
    checkpoint, out = Path(checkpoint), Path(out)
    check_target(out)
    formats = [ExportFormat.ONNX if b is Backend.ONNXRUNTIME else ExportFormat.OPENVINO for b in s.backends]
    with tempfile.TemporaryDirectory(prefix="lighthead-quantize-") as work, atomic_directory(out) as tmp:
        source = _prune(checkpoint, Path(work), s, log) if s.prune_ratio else checkpoint
        export = ExportSettings(formats=tuple(formats), latency_runs=1, threads=max(s.bench.threads))
        model, class_names, _ = load_checkpoint(source)
        export_bundle(model, class_names, tmp, export, source=source, log=log)
        bundle = load_bundle(tmp)
        calib_set = calibration_set_for_bundle(calib, bundle, size=s.calib_size, selection=s.selection)
        log(calib_set.summary())
        quantization: dict[str, dict[str, Any]] = {}
        for backend in s.backends:
            entry, info = _quantize_backend(bundle, backend, calib_set.inputs, s, log)
            info["calibration"] = calib_set.summary().removeprefix("calibration: ")
            quantization[f"{backend.value}/int8"] = info
            update_manifest(tmp, entries=[entry])
        results, report_path = _measure_and_report(load_bundle(tmp), checkpoint, s, quantization, log)
    log(f"bundle: {out}")
    log(f"report: {out / report_path.name}")
    return QuantizeRun(out, out / report_path.name, results, quantization)


def _entry(bundle: Bundle, backend: Backend, extra: dict[str, Any]) -> dict[str, Any]:
    return artifact_entry(backend, Precision.INT8, **{**bundle.artifact(backend, Precision.FP32).info, **extra})


def _quantize_backend(
    bundle: Bundle, backend: Backend, calib: Sequence[np.ndarray], s: QuantizeSettings, log: Log
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one backend's INT8 artifact into the bundle -> (manifest entry, report info)."""
    src, dst = (bundle.root / artifact_files(backend, p)[0] for p in (Precision.FP32, Precision.INT8))
    log(f"quantizing {backend.value} to INT8 on {len(calib)} calibration images")
    forced = _keep_float_names(src, backend, s.keep_float)
    if backend is Backend.ONNXRUNTIME:
        s = replace(s, ort=replace(s.ort, exclude=(*s.ort.exclude, *forced)))
        info = _quantize_onnxruntime(bundle, src, dst, calib, s, log)
    else:
        s = replace(s, ov=replace(s.ov, exclude=(*s.ov.exclude, *forced)))
        info = _quantize_openvino(bundle, src, dst, calib, s, log)
    info["kept_float"] = [{"name": n, "why": "--keep-float"} for n in forced] + info.get("kept_float", [])
    quant = {"scheme": info["scheme"], "kept_float": [k["name"] for k in info.get("kept_float", [])]}
    return _entry(bundle, backend, {"quantization": quant}), info


def _keep_float_names(src: Path, backend: Backend, patterns: Sequence[str]) -> list[str]:
    """The quantizable layers of the FP32 artifact ``src`` whose names contain one of ``patterns``; a pattern that
    names none is an error that lists what there is."""
    if not patterns:
        return []
    if backend is Backend.ONNXRUNTIME:
        import onnx

        from lighthead_edge.compress.quantize_ort import fold_initializer_identities, quantizable_nodes

        names = quantizable_nodes(fold_initializer_identities(onnx.load(str(src))))
    else:
        import openvino as ov

        from lighthead_edge.compress.quantize_ov import quantizable_ops

        names = quantizable_ops(ov.Core().read_model(str(src)))
    chosen = []
    for pattern in patterns:
        hits = [n for n in names if pattern in n]
        if not hits:
            heads = sorted({"/".join(n.split("/")[:3]) + "/" for n in names})  # e.g. /roi_heads/head/
            raise ConfigError(f"--keep-float {pattern!r} names no quantizable {backend.value} layer; they are under "
                              f"{', '.join(heads[:12])}{', ...' if len(heads) > 12 else ''}")  # fmt: skip
        chosen += [n for n in hits if n not in chosen]
    return chosen


def _measure_and_report(
    bundle: Bundle, checkpoint: Path, s: QuantizeSettings, quantization: dict[str, Any], log: Log
) -> tuple[dict[str, Any], Path]:
    from lighthead_edge.compress.report import add_ratios, write_report
    from lighthead_edge.measure import host_description as _host

    results = measure_bundle(bundle, s.bench, log)
    threads = str(s.bench.threads[-1])
    results = add_ratios(results, threads)
    report = {"model": checkpoint.name, "host": _host(), "threads": threads, "val_data": s.val_json, "isa": s.bench.isa,
              "pruned": s.prune_ratio, "results": results, "quantization": quantization}  # fmt: skip
    update_manifest(bundle.root, measurements={"threads": int(threads), "host": report["host"], "results": results})
    return results, write_report(bundle.root, report)


# ----------------------------------------------------------------------------------------------- accuracy control
def _val_items(bundle: Bundle, val_json: str) -> list[tuple[int, np.ndarray, float, tuple[int, int]]]:
    """(image id, letterboxed input, scale, original (h, w)) of every val image: what the AP functions run on."""
    from lighthead_edge.data.transforms import letterbox, read_image
    from lighthead_edge.evaluate import _coco_images

    images, _ = _coco_images(val_json, bundle.class_names)
    items = []
    for im in images:
        frame = read_image(Path(val_json).parent / im["file_name"])
        image, scale = letterbox(frame, bundle.input_size, pad_bgr=bundle.pad_bgr)
        items.append((int(im["id"]), image[None], scale, (frame.shape[0], frame.shape[1])))
    return items


def coco_ap(run: Callable[[np.ndarray], dict[str, np.ndarray]], items: Sequence[tuple], bundle: Bundle,
            val_json: str) -> float:  # fmt: skip
    """COCO AP (0.5:0.95) of ``run`` (letterboxed input -> graph outputs by name) on ``items`` of ``val_json``."""
    from lighthead_edge.data.transforms import scale_boxes
    from lighthead_edge.evaluate import _coco_images, coco_map, to_coco_results

    _, label_to_cat = _coco_images(val_json, bundle.class_names)
    results: list[dict] = []
    for image_id, image, scale, hw in items:
        o = run(image)
        n = int(np.asarray(o["num_detections"]).reshape(-1)[0])
        boxes = scale_boxes(np.asarray(o["boxes"])[0, :n], scale, hw)
        results += to_coco_results(image_id, boxes, np.asarray(o["scores"])[0, :n], np.asarray(o["labels"])[0, :n],
                                   label_to_cat)  # fmt: skip
    return coco_map(val_json, results, [it[0] for it in items])["AP"]


def _ort_ap(path: Path, items: Sequence[tuple], bundle: Bundle, val_json: str) -> float:
    from lighthead_edge.runtime.backends import Hint
    from lighthead_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    engine = OnnxRuntimeBackend(path, device="CPU", threads=None, hint=Hint.LATENCY, jobs=None)
    return coco_ap(engine.run, items, bundle, val_json)


RANKING_IMAGES = 300  # val images the per-layer ranking runs on (NNCF's ranking_subset_size default)


def _ap_ranking(src: Path, dst: Path, items: Sequence[tuple], bundle: Bundle, val_json: str, int8_ap: float,
                log: Log) -> list[tuple[str, float]]:  # fmt: skip
    """Each quantized compute layer, by the AP it gives back when it alone reads float inputs (largest gain first).

    The variants are made from the INT8 graph itself (:func:`float_variant`), so ranking costs one AP evaluation per
    layer and no re-calibration.
    """
    import onnx

    from lighthead_edge.compress.quantize_ort import float_variant, fold_initializer_identities, quantized_nodes
    from lighthead_edge.progress import progress

    fp32, int8 = fold_initializer_identities(onnx.load(str(src))), onnx.load(str(dst))
    names = quantized_nodes(fp32, int8)
    subset = items[:RANKING_IMAGES]
    reference = int8_ap if len(subset) == len(items) else _ort_ap(dst, subset, bundle, val_json)
    log(f"  ranking {len(names)} quantized layers by the AP each gives back in float ({len(subset)} val images)")
    probe = dst.with_suffix(".probe.onnx")
    gains: list[tuple[str, float]] = []
    try:
        for name in progress(names, desc="ranking layers"):
            onnx.save(float_variant(fp32, int8, [name]), str(probe))
            gains.append((name, _ort_ap(probe, subset, bundle, val_json) - reference))
    finally:
        probe.unlink(missing_ok=True)
    return sorted(gains, key=lambda kv: -kv[1])


def _range_candidates(s: QuantizeSettings) -> list[bool]:
    """The ``moving_average`` values to try: both under ``auto`` with a val set, else the one asked for."""
    if s.ort_ranges is OrtRanges.AUTO:
        return [False, True] if s.val_json else [False]
    return [s.ort_ranges is OrtRanges.AVERAGED]


def _range_name(averaged: bool) -> str:
    return (OrtRanges.AVERAGED if averaged else OrtRanges.MINMAX).value


def _quantize_onnxruntime(
    bundle: Bundle, src: Path, dst: Path, calib: Sequence[np.ndarray], s: QuantizeSettings, log: Log
) -> dict[str, Any]:
    """QDQ INT8 for onnxruntime; with ``max_drop``, revert the layers whose float inputs give back the most AP.

    Under ``--ort-ranges auto`` with a val set, both activation-range settings are quantized and the one with the
    higher AP is kept. The accuracy-control ranking then tries each quantized compute layer in float on the val set
    (AP gain against the INT8 model); the search re-quantizes with the top 1, 2, 4, ... of it excluded until the drop
    is within ``max_drop``.
    """
    from lighthead_edge.compress.quantize_ort import profile_nodes, quantize_onnx

    candidates = _range_candidates(s)
    items = _val_items(bundle, s.val_json) if s.val_json and (len(candidates) > 1 or s.max_drop is not None) else []
    base = _ort_ap(src, items, bundle, s.val_json) if items else None
    tried: dict[bool, float] = {}
    for averaged in candidates:
        out = dst if len(candidates) == 1 else dst.with_suffix(f".{_range_name(averaged)}.onnx")
        quantize_onnx(src, out, calib, replace(s.ort, moving_average=averaged))
        if items:
            tried[averaged] = _ort_ap(out, items, bundle, s.val_json)
            log(f"onnxruntime INT8, {_range_name(averaged)} ranges: AP {tried[averaged]:.4f} against FP32 {base:.4f}")
    averaged = max(tried, key=tried.__getitem__) if len(candidates) > 1 else candidates[0]  # a tie keeps minmax
    why = "the higher val AP"
    if len(candidates) > 1 and s.max_drop is not None and base - tried[averaged] > s.max_drop:
        averaged, why = False, "over budget either way; accuracy control searches from minmax"
    if len(candidates) > 1:
        for other in candidates:
            path = dst.with_suffix(f".{_range_name(other)}.onnx")
            if other == averaged:
                path.replace(dst)
            else:
                path.unlink()
        log(f"onnxruntime INT8: keeping {_range_name(averaged)} ranges ({why})")
    ort = replace(s.ort, moving_average=averaged)
    ranges = "MinMax, averaged per image" if averaged else "MinMax"
    info: dict[str, Any] = {"scheme": f"QDQ, per-channel s8 weights (reduce_range), u8 activations, {ranges}",
                            "float_scope": _ort_float_scope(src), "kept_float": [],
                            "ranges": {"setting": s.ort_ranges.value, "used": _range_name(averaged), "why": why,
                                       "val_ap": {_range_name(a): ap for a, ap in tried.items()}}}  # fmt: skip
    if s.max_drop is not None:
        ap = tried[averaged]
        log(f"onnxruntime INT8: AP {ap:.4f} against FP32 {base:.4f} (budget {s.max_drop})")
        ranking = _ap_ranking(src, dst, items, bundle, s.val_json, ap, log) if base - ap > s.max_drop else []
        k, kept = 1, set()
        while base - ap > s.max_drop and k <= len(ranking):
            exclude = tuple(name for name, _ in ranking[:k])
            kept = set(quantize_onnx(src, dst, calib, replace(ort, exclude=(*ort.exclude, *exclude))).kept_float)
            ap = _ort_ap(dst, items, bundle, s.val_json)
            log(f"  {k} highest-ranked layer(s) in float: AP {ap:.4f}")
            if k == len(ranking):
                break
            k = min(2 * k, len(ranking))  # the last try keeps every ranked layer in float
        met = "within" if base - ap <= s.max_drop else "still over"
        why = "AP {:+.4f} when it alone reads float inputs, rank {} of {}; AP drop {:.4f} -> {} {}"
        info["kept_float"] = [{"name": n, "why": why.format(g, i + 1, len(ranking), base - ap, met, s.max_drop)}
                              for i, (n, g) in enumerate(ranking) if n in kept]  # fmt: skip
        info["accuracy_control"] = {"fp32_ap": base, "int8_ap": ap, "max_drop": s.max_drop}
    info["profile_ms"] = profile_nodes(dst, calib[0], threads=max(s.bench.threads), runs=3)
    return info


def _ort_float_scope(src: Path) -> int:
    import onnx

    from lighthead_edge.export.graph import float_node_names

    return len(float_node_names(onnx.load(str(src))))


def _scope_count(ignored: Sequence[str], forced: Sequence[str]) -> int:
    """How many ops NNCF ignored because of the float scope, not because ``--keep-float`` named them."""
    return len(set(ignored) - set(forced))


def _quantize_openvino(
    bundle: Bundle, src: Path, dst: Path, calib: Sequence[np.ndarray], s: QuantizeSettings, log: Log
) -> dict[str, Any]:
    """NNCF INT8 for OpenVINO; with ``max_drop``, ``nncf.quantize_with_accuracy_control`` on COCO AP."""
    from lighthead_edge.compress.quantize_ov import quantize_ir, quantize_ir_with_accuracy_control

    scheme = f"NNCF {s.ov.preset} preset, overflow_fix {'on' if s.ov.overflow_fix else 'off'}"
    if s.max_drop is None:
        result = quantize_ir(src, dst, calib, s.ov)
        return {"scheme": scheme, "float_scope": _scope_count(result.ignored, s.ov.exclude), "kept_float": []}
    items = _val_items(bundle, s.val_json)

    def validate(compiled, data) -> float:
        names = [o.get_any_name() for o in compiled.outputs]

        def run(image: np.ndarray) -> dict[str, np.ndarray]:
            values = compiled({0: image})
            return {name: values[i] for i, name in enumerate(names)}

        return coco_ap(run, list(data), bundle, s.val_json)

    result = quantize_ir_with_accuracy_control(src, dst, calib, items, validate, max_drop=s.max_drop,
                                               to_input=lambda item: item[1], settings=s.ov)  # fmt: skip
    why = "reverted by nncf.quantize_with_accuracy_control (COCO AP ranking) to keep the drop within {}"
    kept = [{"name": n, "why": why.format(s.max_drop)} for n in result.kept_float]
    scope = _scope_count(result.ignored, s.ov.exclude)
    return {"scheme": scheme + ", accuracy control", "float_scope": scope, "kept_float": kept}
