"""Measuring variants side by side: latency p50/p95 at given thread counts, async throughput, COCO AP and size.

Every figure of a table comes from one run on one machine, so ratios against the FP32 baseline are meaningful even
on a noisy shared CPU. :func:`measure_bundle` measures a bundle's artifacts through the torch-free runtime, with
their latencies timed in interleaved blocks (:func:`interleaved_timings`);
:func:`measure_torch` measures the eager model, for the torch baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lighthead_edge.data.transforms import letterbox, read_image
from lighthead_edge.runtime.isa import check_cap, kernel_isas


@dataclass(frozen=True)
class BenchSettings:
    """What to measure.

    Attributes:
        threads: thread counts to time single-frame latency at (the last one is the report's headline).
        runs: timed runs per latency figure (after ``warmup`` untimed ones).
        rounds: the runs are split into this many blocks, and the blocks of all variants (and thread counts) of a
            bundle are interleaved, so a slow spell of a shared host hits every variant alike instead of one.
        throughput_frames: frames pushed through the async pipeline for frames per second.
        val_json: a COCO json for AP/AP50 (optional).
        isa: the ISA OpenVINO's oneDNN kernels were capped at (:func:`~lighthead_edge.runtime.isa.cap_isa`, which
            the caller runs before OpenVINO starts); every OpenVINO variant is checked to really run under it.
    """

    threads: tuple[int, ...] = (2,)
    runs: int = 20
    warmup: int = 3
    throughput_frames: int = 24
    val_json: str | None = None
    rounds: int = 4
    isa: str = "native"


def timings(fn: Callable[[], object], runs: int, warmup: int) -> dict[str, float]:
    """p50 / p95 / min milliseconds of ``fn()`` over ``runs`` timed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
    return _stats(times)


def interleaved_timings(fns: dict[str, Callable[[], object]], runs: int, warmup: int, rounds: int
                        ) -> dict[str, dict[str, float]]:  # fmt: skip
    """:func:`timings` of several callables, interleaved: ``rounds`` blocks of ``runs / rounds`` calls each, cycling
    through ``fns`` in a rotating order, with one untimed call after every switch (caches refill). On a shared CPU
    a burst of load then spreads over all variants instead of doubling one of them."""
    keys = list(fns)
    for key in keys:
        for _ in range(warmup):
            fns[key]()
    rounds = max(1, min(rounds, runs))
    times: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        block = runs // rounds + (r < runs % rounds)
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            fns[key]()
            for _ in range(block):
                start = time.perf_counter()
                fns[key]()
                times[key].append(1000.0 * (time.perf_counter() - start))
    return {key: _stats(t) for key, t in times.items()}


def _stats(times: list[float]) -> dict[str, float]:
    p95 = float(np.percentile(times, 95))
    return {"p50": round(statistics.median(times), 3), "p95": round(p95, 3), "min": round(min(times), 3),
            "runs": len(times)}  # fmt: skip


def bundle_latencies(bundle, artifacts: Sequence, settings: BenchSettings) -> dict[str, dict[str, dict]]:
    """Latency of every artifact at every thread count, all timed interleaved -> ``{key: {threads: stats}}``."""
    return latencies({artifact.key: (bundle, artifact) for artifact in artifacts}, settings)


def latencies(variants: dict[str, tuple[Any, Any]], settings: BenchSettings) -> dict[str, dict[str, dict]]:
    """``{name: (bundle, artifact)}`` -> ``{name: {threads: stats}}``, every variant and thread count timed in one
    interleaved schedule, so that variants of different bundles (pruned against unpruned) compare like those of one.
    Each variant runs on its own bundle's :func:`bench_frame`."""
    from lighthead_edge.runtime.detector import Detector

    fns = {}
    for name, (bundle, artifact) in variants.items():
        image = bench_frame(bundle, settings.val_json)
        for threads in settings.threads:
            detector = Detector(bundle, artifact.backend, threads=threads, precision=artifact.precision)
            if artifact.backend.value == "openvino":
                check_cap(detector.engine.compiled, settings.isa)
            fns[f"{name}@{threads}"] = lambda d=detector, x=image: d.infer(x)
    measured = interleaved_timings(fns, settings.runs, settings.warmup, settings.rounds)
    out: dict[str, dict[str, dict]] = {}
    for key, stats in measured.items():
        name, threads = key.rsplit("@", 1)
        out.setdefault(name, {})[threads] = stats
    return out


def bench_frame(bundle, val_json: str | None) -> np.ndarray:
    """The letterboxed input [1, H, W, 3] uint8 latency is measured on: the first val image, or fixed noise."""
    import json

    if val_json:
        first = json.loads(Path(val_json).read_text(encoding="utf-8"))["images"][0]["file_name"]
        frame = read_image(Path(val_json).parent / first)
    else:
        frame = np.random.default_rng(0).integers(0, 256, (*bundle.input_size, 3), dtype=np.uint8)
    return letterbox(frame, bundle.input_size, pad_bgr=bundle.pad_bgr)[0][None]


def size_on_disk(root: Path, files: Sequence[str]) -> int:
    """Bytes of an artifact's files."""
    return sum((root / name).stat().st_size for name in files)


def measure_artifact(bundle, artifact, settings: BenchSettings, latency: dict[str, dict]) -> dict[str, Any]:
    """Async throughput, size and (with ``val_json``) COCO AP of one artifact, beside ``latency``: its part of
    :func:`bundle_latencies`, which times all of a bundle's artifacts together so that they compare."""
    from lighthead_edge.evaluate import evaluate_bundle
    from lighthead_edge.runtime.detector import Detector

    image = bench_frame(bundle, settings.val_json)
    out: dict[str, Any] = {"size_bytes": size_on_disk(bundle.root, artifact.files), "latency_ms": dict(latency)}
    fast = Detector(bundle, artifact.backend, precision=artifact.precision, hint="throughput")
    if artifact.backend.value == "openvino":
        out["kernels"] = kernel_isas(fast.engine.compiled)  # which ISA the figures are of (see runtime/isa.py)
    frames = [image[0]] * settings.throughput_frames
    list(fast.stream(frames[: fast.engine.jobs]))  # warm every request before timing
    start = time.perf_counter()
    list(fast.stream(frames))
    out["throughput_fps"] = round(len(frames) / (time.perf_counter() - start), 2)
    if settings.val_json:
        detector = Detector(bundle, artifact.backend, threads=settings.threads[-1], precision=artifact.precision)
        metrics = evaluate_bundle(bundle, settings.val_json, detector=detector, progress=False)
        out["coco"] = {k: metrics[k] for k in ("AP", "AP50", "AP75")}
    return out


def measure_torch(checkpoint: str | Path, settings: BenchSettings, input_size: tuple[int, int]) -> dict[str, Any]:
    """The eager torch FP32 model: latency per thread count (of the model's forward) and, with ``val_json``, AP."""
    import torch

    from lighthead_edge.evaluate import evaluate_model
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    model.eval()
    image = torch.rand(1, 3, *input_size) * 255
    out: dict[str, Any] = {"size_bytes": Path(checkpoint).stat().st_size, "latency_ms": {}}
    old = torch.get_num_threads()
    try:
        with torch.no_grad():
            for threads in settings.threads:
                torch.set_num_threads(threads)
                out["latency_ms"][str(threads)] = timings(lambda: model(image), settings.runs, settings.warmup)
    finally:
        torch.set_num_threads(old)
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
    log(f"timing {', '.join(a.key for a in bundle.artifacts)} at {settings.threads} thread(s), interleaved")
    latency = bundle_latencies(bundle, bundle.artifacts, settings)
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
    from lighthead_edge.errors import DataError
    from lighthead_edge.export.bundle import ExportSettings, _host, export_bundle
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.runtime.bundle import load_bundle

    model = Path(model)
    if not model.exists():
        raise DataError(f"{model} not found; give a bundle folder or a model.pt")
    threads = str(settings.threads[-1])
    with tempfile.TemporaryDirectory(prefix="lighthead-bench-") as work:
        if model.is_dir():
            results = bench_bundle(model, settings, log)
            baseline, folder = None, Path(out or model)
        else:
            net, class_names, _ = load_checkpoint(model)
            export = ExportSettings(latency_runs=1)
            bundle = export_bundle(net, class_names, Path(work) / "bundle", export, source=model, log=log)
            log("measuring torch/fp32")
            results = {"torch/fp32": measure_torch(model, settings, load_bundle(bundle).input_size)}
            results.update(bench_bundle(bundle, settings, log))
            baseline, folder = "torch/fp32", Path(out or model.parent)
        folder.mkdir(parents=True, exist_ok=True)
        report = {"model": model.name, "host": _host(), "threads": threads, "val_data": settings.val_json,
                  "isa": settings.isa,
                  "baseline": baseline or "each backend FP32",
                  "results": add_ratios(results, threads, baseline)}  # fmt: skip
        return write_report(folder, report)
