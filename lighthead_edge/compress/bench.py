"""``lighthead-edge bench``: variants side by side: latency p50/p95 at given thread counts, async throughput, COCO
AP and size.

Every figure of a table comes from one run on one machine, so ratios against the FP32 baseline are meaningful even
on a noisy shared CPU. :func:`measure_bundle` measures a bundle's artifacts through the torch-free runtime, with
their latencies timed in interleaved blocks (:func:`~lighthead_edge.measure.latencies`); :func:`measure_torch`
measures the eager model, for the torch baseline.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lighthead_edge.errors import ConfigError, DataError, OutputError
from lighthead_edge.measure import BenchSettings, bench_frame, coco_metrics, eager_latency, latencies


def bundle_latencies(
    bundle, artifacts: Sequence, settings: BenchSettings, log: Callable[[str], None] | None = None
) -> dict[str, dict[str, dict]]:
    """Latency of every artifact at every thread count, all timed interleaved -> ``{key: {threads: stats}}``."""
    return latencies({artifact.key: (bundle, artifact) for artifact in artifacts}, settings, log)


def size_on_disk(root: Path, files: Sequence[str]) -> int:
    """Bytes of an artifact's files."""
    return sum((root / name).stat().st_size for name in files)


def measure_artifact(bundle, artifact, settings: BenchSettings, latency: dict[str, dict]) -> dict[str, Any]:
    """Async throughput, size and (with ``val_json``) COCO AP of one artifact, beside ``latency``: its part of
    :func:`bundle_latencies`, which times all of a bundle's artifacts together so that they compare."""
    from lighthead_edge.runtime.detector import Detector

    image = bench_frame(bundle, settings.val_json)
    out: dict[str, Any] = {"size_bytes": size_on_disk(bundle.root, artifact.files), "latency_ms": dict(latency)}
    fast = Detector(bundle, artifact.backend, precision=artifact.precision, hint="throughput")
    kernels = fast.engine.kernel_isas()  # which ISA the figures are of (see runtime/isa.py); {} for onnxruntime
    if kernels:
        out["kernels"] = kernels
    frames = [image[0]] * settings.throughput_frames
    list(fast.stream(frames[: fast.engine.jobs]))  # warm every request before timing
    start = time.perf_counter()
    list(fast.stream(frames))
    out["throughput_fps"] = round(len(frames) / (time.perf_counter() - start), 2)
    if settings.val_json:
        detector = Detector(bundle, artifact.backend, threads=settings.threads[-1], precision=artifact.precision)
        metrics = coco_metrics(detector, settings.val_json)
        out["coco"] = {k: metrics[k] for k in ("AP", "AP50", "AP75")}
    return out


def measure_torch(checkpoint: str | Path, settings: BenchSettings, input_size: tuple[int, int]) -> dict[str, Any]:
    """The eager torch FP32 model: latency per thread count (of the model's forward) and, with ``val_json``, AP."""
    from lighthead_edge.evaluate import evaluate_model
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    model.eval()
    out: dict[str, Any] = {"size_bytes": Path(checkpoint).stat().st_size,
                           "latency_ms": eager_latency(model, input_size, settings)}  # fmt: skip
    if settings.val_json:
        metrics = evaluate_model(model, settings.val_json, progress=False)
        out["coco"] = {k: metrics[k] for k in ("AP", "AP50", "AP75")}
    return out


def bench_bundle(bundle_path: str | Path, settings: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure every artifact of a bundle -> ``{"backend/precision": figures}``."""
    from lighthead_edge.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    return measure_bundle(bundle, settings, log)


def measure_bundle(bundle, settings: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Every artifact of a loaded bundle: latencies timed interleaved, then throughput, size and AP one by one."""
    latency = bundle_latencies(bundle, bundle.artifacts, settings, log)
    results = {}
    for artifact in bundle.artifacts:
        log(f"measuring {artifact.key}")
        results[artifact.key] = measure_artifact(bundle, artifact, settings, latency[artifact.key])
    return results


def bench_model(
    model: str | Path, settings: BenchSettings, *, out: str | Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """``lighthead-edge bench``: a bundle folder (every artifact) or a model.pt (torch eager, plus an FP32 bundle
    exported to a temporary folder) -> report.md/json/png in ``out`` (default: the bundle, or beside model.pt)."""
    import tempfile

    from lighthead_edge.compress.report import add_ratios, write_report
    from lighthead_edge.export.bundle import ExportSettings, export_bundle
    from lighthead_edge.measure import host_description
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.runtime.bundle import load_bundle

    model = Path(model)
    if not model.exists():
        raise DataError(f"{model} not found; give a bundle folder or a model.pt")
    target = Path(out or (model if model.is_dir() else model.parent))
    check_report_folder(target, "--out" if out else "the report folder", strict=out is not None)
    threads = str(settings.threads[-1])
    with tempfile.TemporaryDirectory(prefix="lighthead-bench-") as work:
        if model.is_dir():
            results = bench_bundle(model, settings, log)
            baseline = None
        else:
            net, class_names, _ = load_checkpoint(model)
            export = ExportSettings(latency_runs=1)
            bundle = export_bundle(net, class_names, Path(work) / "bundle", export, source=model, log=log)
            log("measuring torch/fp32")
            results = {"torch/fp32": measure_torch(model, settings, load_bundle(bundle).input_size)}
            results.update(bench_bundle(bundle, settings, log))
            baseline = "torch/fp32"
        report = {"model": model.name, "host": host_description(), "threads": threads, "val_data": settings.val_json,
                  "isa": settings.isa,
                  "baseline": baseline or "each backend FP32",
                  "results": add_ratios(results, threads, baseline)}  # fmt: skip
        try:
            target.mkdir(parents=True, exist_ok=True)
            return write_report(target, report)
        except OSError as exc:
            raise OutputError(f"can't write the report into {target}: {exc.strerror or exc}") from None


def check_report_folder(folder: Path, option: str, *, strict: bool) -> None:
    """Before any measuring: ``folder`` can take report.md/json/png without overwriting a file bench did not write.

    A bundle, a new or empty folder, or a folder holding only an earlier bench report qualify; without ``strict``
    (the default folder beside a model.pt) other files may be there too, but no report of someone else's.
    Else a one-line :class:`ConfigError` naming the folder.
    """
    from lighthead_edge.runtime.bundle import MANIFEST_NAME, REPORT_FILES, is_bundle_manifest

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file; give a folder for report.md/json/png")
    ancestor = next(p for p in folder.absolute().parents if p.exists())
    if not folder.exists() and not ancestor.is_dir():
        raise ConfigError(f"{option} {folder}: {ancestor} is a file, not a folder")
    if not os.access(folder if folder.exists() else ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: permission denied; give a folder you can write to")
    if not folder.exists() or is_bundle_manifest(folder / MANIFEST_NAME):
        return
    names = {p.name for p in folder.iterdir()}
    if names & set(REPORT_FILES) and not _our_report(folder / "report.json"):
        raise ConfigError(f"{option} {folder} holds a report bench did not write; refusing to overwrite it: give a "
                          "bundle folder or a new or empty one")  # fmt: skip
    if strict and names - set(REPORT_FILES):
        raise ConfigError(f"{option} {folder} holds other files; give a bundle folder or a new or empty one")


def _our_report(path: Path) -> bool:
    """Whether ``path`` is a report.json that bench (or quantize) wrote: an object with its host and results."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"host", "results"} <= report.keys()
