"""The frame-in graph (``--frame-size``) against the host-letterbox path, per frame size, engine and precision.

    python scripts/bench_frame_in.py MODEL.pt --val VAL.json --calib CALIB [--frame-sizes 640x480,1280x720]
        [--threads 2] [--runs 30] [--out runs/frame_in]

For each frame size the validation images are resized to that size (``lighthead_edge.data.framed``: a camera's
frames, boxes scaled with them), two bundles are quantized from MODEL (FP32 + INT8 for ONNX Runtime and OpenVINO),
one plain, one with ``--frame-size``, both calibrated on the same frames (``--calib``, resized the same way) and with
the same layers in INT8 (latency-aware INT8 off), and every pair runs on the same frames:

- ``matched``: the share of the host path's detections (score >= 0.05; >= 0.3 in ``matched@0.3``) that the frame-in
  graph also gives with the same label at IoU >= 0.99;
- ``AP host`` / ``AP frame``: COCO AP (pycocotools) of each on the resized set, and their difference;
- latency: the whole per-frame call (``Detector(frame)``: host letterbox + graph + box mapping, against the frame-in
  graph alone), medians over ``--runs`` interleaved runs on one frame, and the host letterbox alone.

Prints one table and writes ``frame_in.json`` and ``frame_in.md`` to ``--out``. Timings name the host's ISA.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.compress.quantize import QuantizeSettings, quantize_checkpoint
from lighthead_edge.data.framed import framed_dataset
from lighthead_edge.data.transforms import letterbox, letterbox_geometry, scale_boxes
from lighthead_edge.evaluate import evaluate_bundle
from lighthead_edge.measure import BenchSettings, host_description, interleaved_timings
from lighthead_edge.runtime.detector import Detections, Detector

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def matching(host: list, framed: list, min_score: float, iou: float = 0.99) -> tuple[int, int, float]:
    """(matched, total, worst best-IoU) of the host detections (score >= min_score) found again in ``framed`` with
    the same label at IoU >= ``iou``."""
    matched = total = 0
    worst = 1.0
    for a, b in zip(host, framed, strict=True):
        keep = a.scores >= min_score
        if not keep.any():
            continue
        total += int(keep.sum())
        best = np.zeros(int(keep.sum()))
        if len(b):
            best = (box_iou(a.boxes[keep], b.boxes) * (a.labels[keep][:, None] == b.labels[None, :])).max(axis=1)
        matched += int((best >= iou).sum())
        worst = min(worst, float(best.min()))
    return matched, total, worst


def exact_host(detector: Detector, frame: np.ndarray):
    """The host path with an exact bilinear letterbox (float cv2.resize, rounded) instead of cv2's uint8 one, whose
    11-bit fixed-point weights differ from exact bilinear by one grey level on ~8-11% of pixels: the control that
    tells the graph's letterbox apart from that rounding."""
    h, w = frame.shape[:2]
    scale, (nh, nw) = letterbox_geometry((h, w), detector.input_size)
    image = np.empty((*detector.input_size, 3), dtype=np.uint8)
    image[:] = detector.bundle.pad_bgr
    resized = cv2.resize(frame.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
    image[:nh, :nw] = np.rint(resized).astype(np.uint8)
    out = detector.infer(image[None])
    n = int(out["num_detections"].reshape(-1)[0])
    return Detections(scale_boxes(out["boxes"][0, :n], scale, (h, w)), out["scores"][0, :n], out["labels"][0, :n],
                      detector.class_names)  # fmt: skip


def calls(dets: dict[str, Detector], frame: np.ndarray) -> dict:
    """What is timed on one frame: each path's whole per-frame call, and the host letterbox alone."""
    host, framed, size = dets["host"], dets["frame"], dets["host"].input_size
    return {"host": lambda: host(frame), "frame": lambda: framed(frame), "letterbox": lambda: letterbox(frame, size)}


def frame_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--val", required=True, help="COCO json: the frames and their AP")
    parser.add_argument("--calib", required=True, help="COCO json of calibration images (resized to each frame size)")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--frame-sizes", default="640x480,1280x720")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default="runs/frame_in")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    rows, results = [], {"host": host_description(), "threads": args.threads, "model": args.model, "sizes": {}}
    for text in args.frame_sizes.split(","):
        size = frame_size(text)
        name = f"{size[1]}x{size[0]}"
        val = framed_dataset(args.val, out / f"val_{name}", size) if not (out / f"val_{name}").exists() else \
            out / f"val_{name}" / "annotations.json"
        calib = framed_dataset(args.calib, out / f"calib_{name}", size) if not (out / f"calib_{name}").exists() else \
            out / f"calib_{name}" / "annotations.json"
        frames = [cv2.imread(str(p)) for p in sorted((val.parent / "images").glob("*.png"))]
        bundles = {}
        for kind, frame_arg in (("host", None), ("frame", size)):
            target = out / f"bundle_{kind}_{name}"
            if not (target / "manifest.json").is_file():
                log(f"quantizing the {kind} bundle for {name} frames")
                # latency_aware off: both runs must quantize the same layers, and which ones run slower in INT8 is
                # decided from this run's timings (on a shared host one run kept 7 layers float, the next none)
                settings = QuantizeSettings(calib_size=args.calib_size, frame_size=frame_arg, latency_aware=False,
                                            bench=BenchSettings(threads=(args.threads,), runs=3))  # fmt: skip
                quantize_checkpoint(args.model, target, calib=calib.parent / "images", settings=settings, log=log)
            bundles[kind] = target
        for backend in BACKENDS:
            for precision in PRECISIONS:
                dets = {k: Detector(b, backend=backend, precision=precision, threads=args.threads)
                        for k, b in bundles.items()}  # fmt: skip
                outs = {k: [d(f) for f in frames] for k, d in dets.items()}
                m, total, worst = matching(outs["host"], outs["frame"], 0.05)
                m3, total3, _ = matching(outs["host"], outs["frame"], 0.3)
                m90, _, _ = matching(outs["host"], outs["frame"], 0.05, iou=0.9)
                exact = [exact_host(dets["host"], f) for f in frames]
                mx, total_x, _ = matching(exact, outs["frame"], 0.05)
                ap = {k: evaluate_bundle(bundles[k], val, detector=d, progress=False) for k, d in dets.items()}
                timed = interleaved_timings(calls(dets, frames[0]), runs=args.runs, warmup=3, rounds=5)
                row = {"frame": name, "backend": backend, "precision": precision, "matched": m, "total": total,
                       "worst_iou": round(worst, 4), "matched@0.3": m3, "total@0.3": total3, "matched_iou0.9": m90,
                       "matched_exact": mx, "total_exact": total_x,
                       "AP_host": round(ap["host"]["AP"], 4), "AP_frame": round(ap["frame"]["AP"], 4),
                       "AP50_host": round(ap["host"]["AP50"], 4), "AP50_frame": round(ap["frame"]["AP50"], 4),
                       "ms_host": timed["host"]["p50"], "ms_frame": timed["frame"]["p50"],
                       "ms_letterbox": timed["letterbox"]["p50"]}  # fmt: skip
                rows.append(row)
                log(json.dumps(row))
        results["sizes"][name] = [r for r in rows if r["frame"] == name]
    header = ("| frame | engine | prec | matched IoU>=0.99 (score>=0.05) | (score>=0.3) | IoU>=0.9 | "
              "vs exact host letterbox | AP host | AP frame | dAP | ms host (letterbox) | ms frame-in | frame/host |")
    lines = [f"host: {results['host']}, {args.threads} threads, medians of {args.runs} interleaved runs", "",
             header, "|" + "---|" * 13]  # fmt: skip
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "none"  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r['frame']} | {r['backend']} | {r['precision']} | {r['matched']}/{r['total']} "
            f"({pct(r['matched'], r['total'])}) | {pct(r['matched@0.3'], r['total@0.3'])} | "
            f"{pct(r['matched_iou0.9'], r['total'])} | {pct(r['matched_exact'], r['total_exact'])} | "
            f"{r['AP_host']:.4f} | {r['AP_frame']:.4f} | {r['AP_frame'] - r['AP_host']:+.4f} | "
            f"{r['ms_host']:.1f} ({r['ms_letterbox']:.2f}) | {r['ms_frame']:.1f} | {r['ms_frame'] / r['ms_host']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (out / "frame_in.md").write_text(table + "\n", encoding="utf-8")
    (out / "frame_in.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
