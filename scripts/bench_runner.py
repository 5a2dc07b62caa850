"""The video runner's end-to-end fps on a video file against the bundle's async model-only throughput, side by side.

    python scripts/bench_runner.py [--model BUNDLE | --backbone mobilenet_v2 --input-size 320]
                                   [--video PATH] [--frames 150] [--threads 1] [--nireq 2] [--rounds 3]

Model-only: the same letterboxed inputs pushed through the engine with ``nireq`` requests in flight (no decoding,
no letterboxing, no drawing, no files), both through the runner's continuous async queue and through the engine's
own ``run_many``; the better of the two is the reference. End to end: ``lighthead-edge run --video`` in-process,
writing JSONL, and again writing JSONL + an annotated MP4. Rounds are interleaved and medians reported, so that
load from other processes on a shared machine hits both sides alike. The target is end-to-end >= 90% of model-only.

Without ``--model`` a bundle of an untrained detector is exported first (torch needed for that step only): the
speed of a detector does not depend on its weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np


def build_random_bundle(out: Path, backbone: str, input_size: int, num_classes: int = 2, threads: int = 1) -> Path:
    """Export an untrained detector to ``out`` (torch is imported here only)."""
    import torch

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.bundle import ExportSettings, export_bundle
    from lighthead_edge.modeling.detector import build_detector

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, input_size=(input_size, input_size), num_classes=num_classes)
    names = [f"c{i}" for i in range(num_classes)]
    return export_bundle(build_detector(config).eval(), names, out, ExportSettings(latency_runs=1, threads=threads),
                         log=print)


def make_video(path: Path, frames: int, width: int = 640, height: int = 480, fps: float = 25.0) -> Path:
    """A clip of moving, textured rectangles (mp4v), so that decoding costs what a real clip costs."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        image = np.roll(background, 4 * i, axis=1)
        for k in range(5):
            x, y = (60 * k + 7 * i) % (width - 80), (50 + 80 * k) % (height - 80)
            cv2.rectangle(image, (x, y), (x + 70, y + 60), (40 * k, 255 - 40 * k, 128), -1)
        writer.write(image)
    writer.release()
    return path


def model_only_fps(detector, inputs: list[np.ndarray], frames: int, nireq: int) -> tuple[float, float]:
    """(fps through the runner's AsyncEngine, fps through the engine's run_many) on letterboxed inputs."""
    from lighthead_edge.runtime.pipeline import AsyncEngine

    engine = AsyncEngine(detector, nireq)
    for image in inputs[:nireq]:
        engine.submit(image).result()  # warm-up
    in_flight: deque = deque()
    start = time.perf_counter()
    for i in range(frames):
        if len(in_flight) >= engine.nireq:
            in_flight.popleft().result()
        in_flight.append(engine.submit(inputs[i % len(inputs)]))
    for future in in_flight:
        future.result()
    continuous = frames / (time.perf_counter() - start)
    engine.close()
    start = time.perf_counter()
    for _ in detector.engine.run_many(inputs[i % len(inputs)] for i in range(frames)):
        pass
    return continuous, frames / (time.perf_counter() - start)


def runner_fps(args: argparse.Namespace, bundle: Path, video: Path, save: bool, tmp: Path) -> float:
    from lighthead_edge.runtime.runner import RunSettings, run_video
    from lighthead_edge.runtime.sources import SourceKind, SourceSpec

    settings = RunSettings(
        source=SourceSpec(SourceKind.VIDEO, str(video)), model=str(bundle), backend=args.backend,
        threads=args.threads, nireq=args.nireq, hint=args.hint, jsonl=str(tmp / "bench.jsonl"),
        save=str(tmp / "bench.mp4") if save else None, max_frames=args.frames, stats_every=0,
    )  # fmt: skip
    summary = run_video(settings, log=lambda message: None)
    assert summary.processed == args.frames, summary
    return summary.fps


def report(rows: dict[str, list[float]], detector, bundle: Path, video: Path, args: argparse.Namespace) -> None:
    """Medians per path, and each runner path against model-only of the same round (the pairs share the load)."""
    pairs = zip(rows["model-only (runner async queue)"], rows["model-only (engine run_many)"])
    model_only = [max(a, b) for a, b in pairs]
    h, w = detector.input_size
    print(f"\n{bundle} ({detector.artifact.key}, input {w}x{h}), {video.name}, {args.frames} frames, "
          f"threads {args.threads}, nireq {args.nireq}, hint {args.hint}; {args.rounds} rounds")  # fmt: skip
    print(f"{'path':<34}{'median fps':>11}{'vs model-only, same round: median (min..max)':>47}")
    for name, values in rows.items():
        ratios = sorted(v / m for v, m in zip(values, model_only))
        spread = f"{statistics.median(ratios):.0%} ({ratios[0]:.0%}..{ratios[-1]:.0%})"
        print(f"{name:<34}{statistics.median(values):11.2f}{spread:>47}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="Bundle [default: export an untrained one].")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--video", type=Path, default=None, help="[default: a generated 640x480 mp4v clip]")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nireq", type=int, default=2)
    parser.add_argument("--hint", default="latency", choices=["latency", "throughput"])
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from lighthead_edge.runtime import Detector

    tmp = Path(tempfile.mkdtemp(prefix="bench_runner_"))
    bundle = args.model or build_random_bundle(tmp / "bundle", args.backbone, args.input_size, threads=args.threads)
    video = args.video or make_video(tmp / "clip.mp4", args.frames)
    detector = Detector(bundle, args.backend, threads=args.threads, hint=args.hint, jobs=args.nireq)
    cap = cv2.VideoCapture(str(video))
    inputs = [detector.preprocess(cap.read()[1]).input for _ in range(8)]
    cap.release()
    rows: dict[str, list[float]] = {"model-only (runner async queue)": [], "model-only (engine run_many)": [],
                                    "runner, JSONL": [], "runner, JSONL + MP4": []}  # fmt: skip
    for r in range(args.rounds):
        queue_fps, many_fps = model_only_fps(detector, inputs, args.frames, args.nireq)
        rows["model-only (runner async queue)"].append(queue_fps)
        rows["model-only (engine run_many)"].append(many_fps)
        rows["runner, JSONL"].append(runner_fps(args, bundle, video, False, tmp))
        rows["runner, JSONL + MP4"].append(runner_fps(args, bundle, video, True, tmp))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rows.items()), file=sys.stderr)
    report(rows, detector, bundle, video, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
