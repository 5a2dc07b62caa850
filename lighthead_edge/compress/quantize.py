"""``lighthead-edge quantize``: checkpoint -> (prune) -> FP32 bundle -> INT8 artifacts -> measurements -> report.

    run = quantize_checkpoint("model.pt", "bundle/", calib="frames/", settings=QuantizeSettings(val_json="val.json"))
    run.bundle, run.report  # the bundle folder (FP32 and INT8 artifacts, manifest) and its report.md

The bundle is built in a hidden sibling folder and renamed into place when complete, like ``export``. The INT8
artifacts are ``model_int8.onnx`` (onnxruntime) and ``model_int8.xml/.bin`` (OpenVINO), listed in the manifest with
precision ``int8`` and their checksums, so :class:`~lighthead_edge.runtime.detector.Detector` loads them with
``precision="int8"``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lighthead_edge.compress.bench import measure_bundle
from lighthead_edge.compress.calibration import DEFAULT_SIZE, Selection, calibration_set_for_bundle
from lighthead_edge.compress.quantize_ort import OrtQuantSettings, OrtRanges
from lighthead_edge.compress.quantize_ov import OvQuantSettings
from lighthead_edge.errors import ConfigError
from lighthead_edge.evaluate import ValSet
from lighthead_edge.measure import BenchSettings, host_description
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


@dataclass(frozen=True)
class QuantizeSettings:
    """Everything :func:`quantize_checkpoint` does besides the calibration source.

    Attributes:
        backends: which INT8 artifacts to make.
        calib_size, selection: calibration set size and how it is chosen.
        val_json: COCO json: AP/AP50 per variant, and the metric of accuracy control.
        max_drop: with ``val_json``, the largest AP drop (absolute, 0.01 = 1 point) accuracy control may leave.
        prune_ratio, train_json, finetune_epochs: prune (and fine-tune) the model first, in memory
            (:func:`~lighthead_edge.compress.pipeline.prune_and_finetune`).
        bench: what the report measures.
        ort_ranges: ONNX Runtime activation ranges (:class:`OrtRanges`); it sets ``ort.moving_average``.
        keep_float: layers to keep in float on every backend, as substrings of their node names (``--keep-float``),
            e.g. ``roi_heads/head/fc/`` for the fc-2048.
        frame_size: ``(height, width)``: a frame-in bundle (``--frame-size``; see ``ExportSettings.frame_size``).
        latency_aware: after quantizing, time every quantized layer in the FP32 and the INT8 graph on this CPU
            (:mod:`~lighthead_edge.compress.latency`) and quantize again with the layers INT8 makes slower in float
            (``--no-latency-aware``: off).
        layout: ``"detection_output"`` also writes the DL Streamer / model_api IR of every OpenVINO artifact, INT8
            included (``ExportSettings.layout``).
        rois: the graphs' post-NMS RoI slots (``--rois``; see ``ExportSettings.rois``), the same for every graph
            exported (a frame-in bundle's and its host graphs'); None: the checkpoint's.
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
    frame_size: tuple[int, int] | None = None
    rois: int | None = None
    latency_aware: bool = True
    layout: str = "native"
    ort: OrtQuantSettings = field(default_factory=OrtQuantSettings)
    ov: OvQuantSettings = field(default_factory=OvQuantSettings)

    def __post_init__(self) -> None:
        if self.max_drop is not None and not self.val_json:
            raise ConfigError("--max-drop needs --val: accuracy control measures COCO AP on the validation set")
        if self.prune_ratio is not None and not self.train_json:
            raise ConfigError("--prune needs --data train.json (BN re-estimation and fine-tuning run on it)")
        if self.prune_ratio is not None and not 0 < self.prune_ratio < 1:  # nan too
            raise ConfigError(f"--prune must be between 0 and 1, got {self.prune_ratio}")
        if self.max_drop is not None and not 0 < self.max_drop <= 1:  # nan too
            raise ConfigError(f"--max-drop must be in (0, 1] (0.01 = 1 AP point), got {self.max_drop}")
        if self.calib_size < 1 or self.finetune_epochs < 0:
            raise ConfigError(f"--calib-size must be >= 1 and --finetune-epochs >= 0, got {self.calib_size} and "
                              f"{self.finetune_epochs}")  # fmt: skip
        if self.rois is not None and (not isinstance(self.rois, int) or isinstance(self.rois, bool) or self.rois < 1):
            raise ConfigError(f"--rois must be a whole number >= 1, got {self.rois!r}")
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


def _prune(model, class_names: list[str], payload: dict[str, Any], checkpoint: Path, s: QuantizeSettings, log: Log):
    """The checkpoint's model pruned and fine-tuned in memory (no checkpoint is written)."""
    from lighthead_edge.compress.pipeline import PruneSettings, prune_and_finetune
    from lighthead_edge.config import TrainConfig

    cfg = TrainConfig(epochs=s.finetune_epochs, threads=max(s.bench.threads))
    run = prune_and_finetune(model, class_names, train_json=s.train_json, settings=PruneSettings(ratio=s.prune_ratio),
                             train_config=cfg, source_meta=payload.get("meta") or {}, source=str(checkpoint),
                             progress_bar=False, log=log)  # fmt: skip
    return run.model.eval()


def quantize_checkpoint(
    checkpoint: str | Path, out: str | Path, *, calib: str | Path, settings: QuantizeSettings | None = None,
    log: Log = _stderr,
) -> QuantizeRun:  # fmt: skip
    """Export ``checkpoint`` to the bundle ``out`` with INT8 artifacts beside the FP32 ones, and write its report."""
    from lighthead_edge.data.cocojson import load_coco
    from lighthead_edge.export.bundle import ExportFormat, ExportSettings, atomic_directory, check_target, export_bundle
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    s = settings or QuantizeSettings()
    checkpoint, out = Path(checkpoint), Path(out)
    check_target(out, {"CHECKPOINT": checkpoint, "--calib": calib, "--val": s.val_json, "--data": s.train_json})
    for json_path in (calib, s.val_json, s.train_json):  # a broken COCO json: one line now, not after the export
        if json_path is not None and Path(json_path).suffix.lower() == ".json":
            load_coco(json_path)
    formats = [ExportFormat.ONNX if b is Backend.ONNXRUNTIME else ExportFormat.OPENVINO for b in s.backends]
    with atomic_directory(out, log) as tmp:
        model, class_names, payload = load_checkpoint(checkpoint)
        if s.prune_ratio:
            model = _prune(model, class_names, payload, checkpoint, s, log)
        export = ExportSettings(formats=tuple(formats), latency_runs=1, threads=max(s.bench.threads), rois=s.rois)
        # a frame-in bundle's INT8 graphs are its host graphs' INT8 graphs, wrapped (export.frame_in): the host
        # graphs are exported into a hidden folder of the bundle, quantized there, and removed
        host = tmp / ".host" if s.frame_size else tmp
        export_bundle(model, class_names, tmp, replace(export, frame_size=s.frame_size, layout=s.layout),
                      source=checkpoint, log=log)  # fmt: skip
        if s.frame_size:
            log("exporting the host graphs, whose INT8 graphs the frame-in ones wrap")
            export_bundle(model, class_names, host, export, source=checkpoint, log=log)
        bundle = load_bundle(host)
        calib_set = calibration_set_for_bundle(calib, bundle, size=s.calib_size, selection=s.selection)
        log(calib_set.summary())
        quantization: dict[str, dict[str, Any]] = {}
        val = ValSet(s.val_json, bundle) if s.val_json else None  # letterboxed on first use, then shared
        for backend in s.backends:
            quant, info = _quantize_backend(bundle, backend, calib_set.inputs, s, val, log)
            info["calibration"] = calib_set.summary().removeprefix("calibration: ")
            quantization[f"{backend.value}/int8"] = info
            if s.frame_size:
                _wrap_frame_in(bundle, load_bundle(tmp), backend, log)
                info["frame_in"] = "the host graph's INT8 graph between the in-graph letterbox and box mapping"
            update_manifest(tmp, entries=[_entry(load_bundle(tmp, verify=False), backend, {"quantization": quant})])
            if backend is Backend.OPENVINO and s.layout == "detection_output":
                _add_int8_detection_output(tmp, log)
        if s.frame_size:
            shutil.rmtree(host)
        results, report_path = _measure_and_report(load_bundle(tmp), checkpoint, s, quantization, log)
    log(f"bundle: {out}")
    log(f"report: {out / report_path.name}")
    return QuantizeRun(out, out / report_path.name, results, quantization)


def _entry(bundle: Bundle, backend: Backend, extra: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of ``bundle``'s INT8 artifact for ``backend``: its FP32 entry's record plus ``extra``."""
    return artifact_entry(backend, Precision.INT8, **{**bundle.artifact(backend, Precision.FP32).info, **extra})


def _quantize_backend(
    bundle: Bundle, backend: Backend, calib: Sequence[np.ndarray], s: QuantizeSettings, val: ValSet | None, log: Log
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one backend's INT8 artifact into the bundle -> (manifest record, report info)."""
    from lighthead_edge.compress import quantize_ort, quantize_ov

    src, dst = (bundle.root / artifact_files(backend, p)[0] for p in (Precision.FP32, Precision.INT8))
    log(f"quantizing {backend.value} to INT8 on {len(calib)} calibration images")
    forced = keep_float_names(src, backend, s.keep_float)
    threads = max(s.bench.threads)

    def quantize(floating: Sequence[str]) -> dict[str, Any]:
        if backend is Backend.ONNXRUNTIME:
            ort = replace(s.ort, exclude=(*s.ort.exclude, *forced, *floating))
            return quantize_ort.quantize_artifact(src, dst, calib, ort, ranges=s.ort_ranges, val=val,
                                                  max_drop=s.max_drop, threads=threads, log=log)  # fmt: skip
        ov = replace(s.ov, exclude=(*s.ov.exclude, *forced, *floating))
        return quantize_ov.quantize_artifact(src, dst, calib, ov, val=val, max_drop=s.max_drop)

    info = quantize(())
    slow: list[Any] = []
    if s.latency_aware:
        slow, timings = _slower_layers(src, dst, backend, calib[0], forced, threads)
        if slow:
            log(f"{backend.value}: {len(slow)} layer(s) run slower in INT8 than in FP32 on this CPU; quantizing again "
                f"with them in float: {', '.join(t.name for t in slow)}")  # fmt: skip
            info = quantize([t.name for t in slow])
        info["latency_aware"] = {"timings": [t.to_dict() for t in timings], "kept_float": [t.name for t in slow]}
    info["kept_float"] = ([{"name": n, "why": "--keep-float"} for n in forced]
                          + [{"name": t.name, "why": t.why()} for t in slow] + info.get("kept_float", []))  # fmt: skip
    quant = {"scheme": info["scheme"], "kept_float": [k["name"] for k in info.get("kept_float", [])]}
    return quant, info


def _slower_layers(
    src: Path, dst: Path, backend: Backend, image: np.ndarray, forced: Sequence[str], threads: int
) -> tuple[list[Any], list[Any]]:
    """(the quantized layers of ``dst`` that run slower than in ``src`` here, every quantized layer's timing)."""
    from lighthead_edge.compress.latency import layer_timings, slower_in_int8

    names = [n for n in quantizable_names(src, backend) if n not in set(forced)]
    timings = layer_timings(src, dst, image, names, backend=backend.value, threads=threads)
    return slower_in_int8(timings), timings


def quantizable_names(src: Path, backend: Backend) -> list[str]:
    """The layers INT8 may quantize in the FP32 artifact ``src`` (node names for ONNX, op names for an IR)."""
    if backend is Backend.ONNXRUNTIME:
        import onnx

        from lighthead_edge.compress.quantize_ort import fold_initializer_identities, quantizable_nodes

        return quantizable_nodes(fold_initializer_identities(onnx.load(str(src))))
    import openvino as ov

    from lighthead_edge.compress.quantize_ov import quantizable_ops

    return quantizable_ops(ov.Core().read_model(str(src)))


def _add_int8_detection_output(root: Path, log: Log) -> None:
    """The DL Streamer / model_api IR of the bundle's INT8 IR, beside the FP32 / FP16 ones ``export`` wrote, in the
    manifest's ``handoffs`` and ``files``."""
    from lighthead_edge.export import handoff
    from lighthead_edge.runtime.bundle import file_records, read_manifest, write_manifest

    manifest = read_manifest(root)
    record = handoff.add_detection_output(root, [Precision.INT8], manifest, log)
    handoffs = manifest.setdefault("handoffs", {})
    entries = [e for e in handoffs.get(handoff.DETECTION_OUTPUT, record)["artifacts"] if e["precision"] != "int8"]
    handoffs[handoff.DETECTION_OUTPUT] = {**record, "artifacts": entries + record["artifacts"]}
    manifest["files"].update(file_records(root, record["artifacts"][0]["files"]))
    write_manifest(root, manifest)


def _wrap_frame_in(host: Bundle, framed: Bundle, backend: Backend, log: Log) -> None:
    """Write ``framed``'s INT8 artifact for ``backend``: ``host``'s INT8 graph (same quantization parameters)
    between the letterbox and the box mapping of ``framed``'s frame size, with ``framed``'s metadata."""
    from lighthead_edge.export.frame_in import wrap_ir, wrap_onnx

    src = host.root / artifact_files(backend, Precision.INT8)[0]
    dst = framed.root / artifact_files(backend, Precision.INT8)[0]
    log(f"wrapping the {backend.value} INT8 graph for {framed.frame_size[1]}x{framed.frame_size[0]} frames")
    fp32 = framed.root / artifact_files(backend, Precision.FP32)[0]
    if backend is Backend.ONNXRUNTIME:
        from lighthead_edge.export.onnx import read_metadata

        wrap, metadata = wrap_onnx, read_metadata(fp32)
    else:
        from lighthead_edge.export.openvino import read_rt_info

        wrap, metadata = wrap_ir, read_rt_info(fp32)
    wrap(src, dst, frame_size=framed.frame_size, input_size=framed.model_size, metadata=metadata)


def keep_float_names(src: Path, backend: Backend, patterns: Sequence[str]) -> list[str]:
    """The quantizable layers of the FP32 artifact ``src`` whose names contain one of ``patterns``; a pattern that
    names none is an error that lists what there is."""
    if not patterns:
        return []
    names = quantizable_names(src, backend)
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

    results = measure_bundle(bundle, s.bench, log)
    threads = str(s.bench.threads[-1])
    results = add_ratios(results, threads)
    report = {"model": checkpoint.name, "host": host_description(), "threads": threads, "val_data": s.val_json,
              "isa": s.bench.isa, "pruned": s.prune_ratio, "results": results,
              "quantization": quantization}  # fmt: skip
    update_manifest(bundle.root, measurements={"threads": int(threads), "host": report["host"], "results": results})
    return results, write_report(bundle.root, report)
