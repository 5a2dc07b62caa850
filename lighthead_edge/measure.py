"""Measuring a bundle: latency timed in interleaved blocks, the AP of an artifact, and the host and ISA it ran on.

    settings = BenchSettings(threads=(1, 2), runs=20, val_json="val.json")
    latencies({"ov": (bundle, bundle.artifact("openvino", "fp32"))}, settings)  # {"ov": {"1": stats, "2": stats}}
    host_description()  # "AMD EPYC 7B13, 2 cores (avx2)"

``export``, ``quantize``, ``bench`` and the scripts all measure through this module, so every table times the same
way: the first val image (or fixed noise) letterboxed like the runtime does, the graph alone, p50 / p95 / min over
timed runs that follow untimed warm-up runs. Torch-free at import; only :func:`eager_latency` imports torch.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]


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


# ------------------------------------------------------------------------------------------------------- timing
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


def bench_frame(bundle, val_json: str | None) -> np.ndarray:
    """The letterboxed input [1, H, W, 3] uint8 latency is measured on: the first val image, or fixed noise."""
    from lighthead_edge.data.cocojson import image_paths
    from lighthead_edge.data.transforms import letterbox, read_image

    if val_json:
        frame = read_image(image_paths(val_json)[0])
    else:
        frame = np.random.default_rng(0).integers(0, 256, (*bundle.input_size, 3), dtype=np.uint8)
    return letterbox(frame, bundle.input_size, pad_bgr=bundle.pad_bgr)[0][None]


def latencies(
    variants: dict[str, tuple[Any, Any]], settings: BenchSettings, log: Log | None = None
) -> dict[str, dict[str, dict]]:
    """``{name: (bundle, artifact)}`` -> ``{name: {threads: stats}}``, every variant and thread count timed in one
    interleaved schedule, so that variants of different bundles (pruned against unpruned) compare like those of one.
    Each variant runs on its own bundle's :func:`bench_frame`; each is checked to run under ``settings.isa``.
    ``log`` hears what is timed once every variant has loaded (a bundle refused on load logs nothing)."""
    from lighthead_edge.runtime.detector import Detector

    fns = {}
    for name, (bundle, artifact) in variants.items():
        image = bench_frame(bundle, settings.val_json)
        for threads in settings.threads:
            detector = Detector(bundle, artifact.backend, threads=threads, precision=artifact.precision)
            detector.engine.check_isa(settings.isa)
            fns[f"{name}@{threads}"] = lambda d=detector, x=image: d.infer(x)
    if log is not None:
        log(f"timing {', '.join(variants)} at {settings.threads} thread(s), interleaved")
    measured = interleaved_timings(fns, settings.runs, settings.warmup, settings.rounds)
    out: dict[str, dict[str, dict]] = {}
    for key, stats in measured.items():
        name, threads = key.rsplit("@", 1)
        out.setdefault(name, {})[threads] = stats
    return out


def eager_latency(model, input_size: tuple[int, int], settings: BenchSettings) -> dict[str, dict[str, float]]:
    """Latency of the eager torch ``model``'s forward at each of ``settings.threads`` -> ``{threads: stats}``."""
    import torch

    image = torch.rand(1, 3, *input_size) * 255
    out = {}
    old = torch.get_num_threads()
    try:
        with torch.no_grad():
            for threads in settings.threads:
                torch.set_num_threads(threads)
                out[str(threads)] = timings(lambda: model(image), settings.runs, settings.warmup)
    finally:
        torch.set_num_threads(old)
    return out


# -------------------------------------------------------------------------------------------------- AP and host
def coco_metrics(detector, val_json: str | Path) -> dict[str, float]:
    """COCO metrics of a runtime ``Detector`` (one artifact of a bundle) on ``val_json``: AP, AP50, AP75, ..."""
    from lighthead_edge.evaluate import evaluate_bundle

    return evaluate_bundle(detector.bundle.root, val_json, detector=detector, progress=False)


def host_description() -> str:
    """The CPU model, core count and SIMD extensions, so that the latencies (INT8 ones above all) read in context."""
    from lighthead_edge.runtime.isa import cpu_isa_flags

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass  # not Linux
    flags = cpu_isa_flags()
    return f"{name}, {os.cpu_count()} cores" + (f" ({' '.join(flags)})" if flags else "")


# ----------------------------------------------------------------------------------------------------- export
def export_measurements(
    model, bundle, *, val_json: str | None, threads: int | None, runs: int, log: Log
) -> dict[str, Any]:  # fmt: skip
    """What ``export`` records: every artifact's latency (timed interleaved) and, with ``val_json``, the COCO
    metrics of the eager ``model`` and of every artifact through the runtime."""
    from lighthead_edge.evaluate import evaluate_model
    from lighthead_edge.runtime.detector import Detector

    out: dict[str, Any] = {"threads": threads, "latency_runs": runs, "host": host_description(), "results": {}}
    if val_json:
        out["val_data"] = Path(val_json).name
        log(f"evaluating torch (eager) on {out['val_data']}")
        out["results"]["torch/fp32"] = {"coco": evaluate_model(model, val_json, progress=False)}
    detectors = {a.key: Detector(bundle, a.backend, threads=threads, precision=a.precision) for a in bundle.artifacts}
    image = bench_frame(bundle, val_json)
    log(f"timing {', '.join(detectors)}, interleaved")
    timed = interleaved_timings({k: lambda d=d: d.infer(image) for k, d in detectors.items()}, runs, 2, rounds=4)
    for key, detector in detectors.items():
        result: dict[str, Any] = {"latency_ms": timed[key]}
        if val_json:
            log(f"evaluating {key}")
            result["coco"] = coco_metrics(detector, val_json)
        out["results"][key] = result
    return out


def summary_line(results: dict[str, Any]) -> str:
    """``key: AP a b ms; ...``: one line of export's measurements."""
    parts = []
    for key, r in results.items():
        ap = f" AP {r['coco']['AP']:.4f}" if "coco" in r else ""
        ms = f" {r['latency_ms']['p50']:.1f} ms" if "latency_ms" in r else ""
        parts.append(f"{key}:{ap}{ms}")
    return "; ".join(parts)

