"""Frames per second of the lightheaddetect element against the Detector in a Python loop, on the same frames.

    .venv/bin/python deploy/gstreamer/bench_element.py BUNDLE [--frames 300] [--size 160x120] [--threads 1] [--video V]

The frames (BGR, SIZE) are decoded once from VIDEO (or made by videotestsrc) into a raw file. Then, interleaved
``--rounds`` times:

- ``python``: ``Detector(BUNDLE, threads=T)`` called on each frame in a loop (the frames already in memory);
- ``element``: ``gst-launch-1.0 filesrc ! rawvideoparse ! queue ! lightheaddetect threads=T [draw, jsonl] !
  fakesink`` in the documented environment, on all the frames and on the first fifth: the difference of the wall
  times over the difference of the frame counts is the time per frame in steady state (start-up and model load
  cancel out).

Each path's figure is the median over the rounds, and the best round beside it (on a shared machine the least
disturbed one); the element's overhead per frame is its time minus the loop's. Prints a table; --json writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
def gst_env() -> dict[str, str]:
    """The README's environment: GST_PLUGIN_PATH, PYTHONPATH (venv site-packages, checkout), PATH without venvs."""
    env = dict(os.environ)
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d).parent / "pyvenv.cfg").is_file()]
    env.update(GST_PLUGIN_PATH=str(REPO / "deploy" / "gstreamer"), PATH=os.pathsep.join(path),
               PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], str(REPO)]))  # fmt: skip
    return env


def make_frames(raw: Path, video: str | None, frames: int, width: int, height: int) -> np.ndarray:
    src = f"filesrc location={video} ! decodebin" if video else f"videotestsrc num-buffers={frames} pattern=ball"
    cmd = (f"gst-launch-1.0 -q {src} ! videoconvert ! videoscale ! video/x-raw,format=BGR,width={width},"
           f"height={height} ! filesink location={raw}")  # fmt: skip
    subprocess.run(cmd.split(), check=True, env=gst_env())
    data = np.fromfile(raw, np.uint8).reshape(-1, height, width, 3)
    return data[:frames]


def python_loop(bundle: str, frames: np.ndarray, threads: int) -> list[float]:
    from lighthead_edge.runtime.detector import Detector

    detector = Detector(bundle, threads=threads)
    detector(frames[0])
    times, found = [], 0
    for frame in frames:
        start = time.perf_counter()
        found += len(detector(frame))
        times.append(time.perf_counter() - start)
    python_loop.detections_per_frame = found / len(frames)  # what the JSONL, messages and drawing carry per frame
    return times


def element(bundle: str, raw: Path, shape: tuple[int, ...], threads: int, extra: str) -> float:
    """Seconds per frame in steady state: gst-launch on all the frames and on the first fifth, the difference of
    their wall times over the difference of their frame counts (start-up and model load cancel out)."""
    n, height, width, _ = shape
    frame_bytes = height * width * 3
    walls = []
    for count in (n // 5, n):
        pipeline = (f"filesrc location={raw} blocksize={frame_bytes} num-buffers={count} ! rawvideoparse "
                    f"width={width} height={height} format=bgr framerate=30/1 ! queue ! lightheaddetect "
                    f"model={bundle} threads={threads} {extra} ! fakesink")  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], capture_output=True, text=True,
                             env=gst_env())  # fmt: skip
        walls.append(time.perf_counter() - start)
        if out.returncode != 0:
            sys.exit(f"element run failed: {out.stdout.strip()} {out.stderr.strip()}")
    return (walls[1] - walls[0]) / (n - n // 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--video")
    parser.add_argument("--json")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "frames.bgr"
        frames = make_frames(raw, args.video, args.frames, width, height)
        raw.write_bytes(frames.tobytes())
        jsonl = Path(tmp) / "out.jsonl"
        variants = {"python": None, "element": "", "element draw": "draw=true", "element jsonl": f"jsonl={jsonl}"}
        results: dict[str, list[float]] = {k: [] for k in variants}  # seconds per frame, one per round
        for _ in range(args.rounds):
            for name, extra in variants.items():
                results[name].append(statistics.mean(python_loop(args.bundle, frames, args.threads)) if extra is None
                                     else element(args.bundle, raw, frames.shape, args.threads, extra))  # fmt: skip
    base = statistics.median(results["python"]) * 1e3
    rows = {}
    print(f"{len(frames)} frames {width}x{height}, threads {args.threads}, {args.rounds} rounds interleaved, "
          f"{python_loop.detections_per_frame:.1f} detections per frame")
    best = min(results["python"]) * 1e3
    print(f"{'path':<14} {'ms/frame':>8} {'fps':>7} {'overhead':>8} | {'best ms':>7} {'fps':>7} {'overhead':>8}")
    for name, times in results.items():
        ms, low = statistics.median(times) * 1e3, min(times) * 1e3
        rows[name] = {"ms_per_frame": ms, "fps": 1e3 / ms, "overhead_ms": ms - base, "best_ms": low,
                      "best_overhead_ms": low - best, "rounds_ms": [t * 1e3 for t in times]}  # fmt: skip
        print(f"{name:<14} {ms:8.2f} {1e3 / ms:7.1f} {ms - base:8.2f} | {low:7.2f} {1e3 / low:7.1f} {low - best:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
