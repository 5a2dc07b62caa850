"""Frames per second of the C runtime (deploy/c's ``lighthead_detect`` loop) against the Python one (``Detector`` in a
loop, writing the same JSON lines), on the same bundle, frames, precision and threads.

    python scripts/bench_c_runtime.py [--model BUNDLE | --backbone tiny --input-size 128] [--frames 200]
                                      [--threads 1 2] [--rounds 3] [--precision fp32] [--cli PATH]

C: ``lighthead_detect --summary`` reads the frames from a file on stdin, detects and writes JSONL to /dev/null; its
summary line times the loop from the first frame to the last line (the bundle check and model compile excluded).
Python: the same frames from memory through ``Detector(...)(frame)`` + ``detections_record`` + ``json.dumps`` to
/dev/null, timed the same way (the loading excluded). Both do the same work per frame: one synchronous inference,
the outputs turned into records, a line written. Rounds alternate C and Python so that load from other processes
on a shared machine hits both alike; the table gives medians, the ratio C / Python, the best round of each (the
least disturbed by other processes) and the host's ISA.

Without ``--model`` an untrained detector of ``--backbone`` at ``--input-size`` is exported first (torch needed for
that step only; speed does not depend on the weights). Without ``--cli`` deploy/c is built into a temporary folder
with ``deploy/c/build.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def export_random_bundle(out: Path, backbone: str, input_size: int) -> Path:
    """An untrained 2-class detector's bundle (torch is imported here only)."""
    import torch

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.bundle import ExportSettings, export_bundle
    from lighthead_edge.modeling.detector import build_detector

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, input_size=(input_size, input_size), num_classes=2)
    return export_bundle(build_detector(config).eval(), ["a", "b"], out, ExportSettings(latency_runs=1, threads=1),
                         log=lambda message: None)  # fmt: skip


def build_cli(folder: Path) -> Path:
    subprocess.run(["bash", str(ROOT / "deploy/c/build.sh"), str(folder / "prefix")], check=True,
                   env={**os.environ, "BUILD_DIR": str(folder / "build")}, stdout=subprocess.DEVNULL)  # fmt: skip
    return folder / "prefix/bin/lighthead_detect"


def make_frames(count: int, height: int, width: int) -> np.ndarray:
    """Smooth noise with moving bright rectangles: ndarray[count, h, w, 3] uint8, the same for both runtimes."""
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frame = np.roll(base, 3 * i, axis=1)
        for k in range(3):
            x, y = (17 * k + 5 * i) % max(1, width - width // 4), (23 * k) % max(1, height - height // 4)
            frame[y : y + height // 4, x : x + width // 4] = (60 * k, 255 - 60 * k, 128)
        frames[i] = frame
    return frames


def c_fps(cli: Path, bundle: Path, raw: Path, size: tuple[int, int], threads: int, precision: str) -> float:
    h, w = size
    with raw.open("rb") as stdin:
        result = subprocess.run([str(cli), "--model", str(bundle), "--stdin-raw", f"{w}x{h}", "--threads",
                                 str(threads), "--precision", precision, "--min-score", "0", "--summary"],
                                stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                check=True)  # fmt: skip
    match = re.search(r"summary: (\d+) frames in ([\d.]+) s", result.stderr)
    return int(match[1]) / float(match[2])


def python_fps(bundle: Path, frames: np.ndarray, threads: int, precision: str) -> float:
    from lighthead_edge.runtime.detector import Detector
    from lighthead_edge.runtime.outputs import detections_record

    detector = Detector(bundle, backend="openvino", precision=precision, threads=threads)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            record = detections_record(i, time.time(), frame.shape[:2], detector(frame), 0.0)
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            sink.flush()
        return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a bundle [default: export an untrained one]")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--cli", type=Path, help="a built lighthead_detect [default: build deploy/c]")
    args = parser.parse_args()

    from lighthead_edge.measure import host_description
    from lighthead_edge.runtime.bundle import load_bundle

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bundle = args.model or export_random_bundle(tmp_path / "bundle", args.backbone, args.input_size)
        cli = args.cli or build_cli(tmp_path)
        _, h, w, _ = load_bundle(bundle, verify=False).input_shape
        frames = make_frames(args.frames, h, w)
        raw = tmp_path / "frames.raw"
        raw.write_bytes(frames.tobytes())
        rows = []
        for threads in args.threads:
            c, py = [], []
            for _ in range(args.rounds):
                c.append(c_fps(cli, bundle, raw, (h, w), threads, args.precision))
                py.append(python_fps(bundle, frames, threads, args.precision))
            rows.append((threads, statistics.median(c), statistics.median(py), c, py))

    print(f"host: {host_description()}")
    print(f"bundle: {bundle} ({w}x{h} frames, openvino/{args.precision}); {args.frames} frames, {args.rounds} rounds, "
          "medians")  # fmt: skip
    print("| threads | C lighthead_detect fps | Python Detector fps | C / Python | C ms/frame | Python ms/frame | "
          "best C / best Python fps |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for threads, c, py, c_all, py_all in rows:
        print(f"| {threads} | {c:.1f} | {py:.1f} | {c / py:.2f} | {1000 / c:.2f} | {1000 / py:.2f} | "
              f"{max(c_all):.1f} / {max(py_all):.1f} |")  # fmt: skip
    for threads, _, _, c_all, py_all in rows:
        c_rounds, py_rounds = [round(v, 1) for v in c_all], [round(v, 1) for v in py_all]
        print(f"threads {threads}: C rounds {c_rounds}, Python rounds {py_rounds}", file=sys.stderr)


if __name__ == "__main__":
    main()
