"""The built-in demo: real data, a real pretrained backbone, the whole job on a default, with progress.

NEON airborne tree crowns (train on tiles of two YELL scenes, evaluate on OSBS_029 + SOAP_061) -> fine-tune an
ImageNet MobileNetV2 Light-Head R-CNN (S) -> COCO mAP -> an ONNX + OpenVINO bundle with INT8 artifacts and a report
of accuracy against speed -> pictures of the INT8 detections -> a drone flyover through the video runner.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from lighthead_edge.config import ModelConfig, TrainConfig
from lighthead_edge.data.cocojson import image_paths

# trees are small (median ~35 px at 10 cm/px): a 512 input and anchors from 16 px up
DEMO_MODEL = ModelConfig(backbone="mobilenet_v2", head_size="S", input_size=(512, 512), anchor_scales=(1, 2, 4, 8, 16))


def _step(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def run_demo(
    out_dir: str | Path, *, minutes: float = 6.0, iters: int = 450, threads: int | None = None
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return its summary (also written to ``out_dir/summary.json``)."""
    from lighthead_edge.compress.quantize import QuantizeSettings, quantize_checkpoint
    from lighthead_edge.data.neon import prepare_neon
    from lighthead_edge.evaluate import evaluate_model, format_metrics
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.modeling.pretrained import imagenet_mobilenet_v2
    from lighthead_edge.train import train

    out = Path(out_dir)
    n = 7
    started = time.perf_counter()
    _step(1, n, f"NEON tree-crown data -> {out / 'data'}")
    data = prepare_neon(out / "data", progress=True)
    _step(2, n, "ImageNet MobileNetV2 weights (cached after the first run)")
    weights = imagenet_mobilenet_v2()
    _step(
        3,
        n,
        f"fine-tuning mobilenet_v2-S at {DEMO_MODEL.input_size[0]}px for up to {iters} iterations / {minutes:g} min",
    )
    result = train(
        train_json=data["train"], val_json=data["val"], out=out / "model.pt", model_config=DEMO_MODEL,
        train_config=TrainConfig(iters=iters, batch_size=4, warmup_iters=50, max_minutes=minutes, threads=threads,
                                 augment="aerial", eval_every=5),
        pretrained=weights,
    )  # fmt: skip
    _step(4, n, "COCO mAP of the torch model on the held-out scenes (pycocotools)")
    model, classes, _ = load_checkpoint(result.checkpoint)
    metrics = evaluate_model(model, data["val"], results_path=out / "detections.json")
    _step(5, n, "export to ONNX + OpenVINO, INT8 post-training quantization (calibrated on the training tiles), report")
    quantized = quantize_checkpoint(
        result.checkpoint, out / "bundle", calib=data["train"], settings=QuantizeSettings(val_json=data["val"])
    )
    bundle = quantized.bundle
    _step(6, n, "drawing the INT8 bundle's detections (torch-free runtime, OpenVINO)")
    pictures = draw_bundle_detections(bundle, data["val"], out)
    _step(7, n, "a drone flyover of the held-out scenes through the video runner -> MP4 + JSONL")
    video = make_flyover(image_paths(data["val"]), out / "flyover.mp4")
    run_summary = run_flyover(bundle, video, out, threads)
    summary = {
        "model": str(result.checkpoint), "bundle": str(bundle), "train_minutes": round(result.seconds / 60, 2),
        "metrics": metrics, "report": str(quantized.report), "variants": quantized.results,
        "pictures": [str(p) for p in pictures], "flyover": str(video), "annotated": str(out / "flyover_detections.mp4"),
        "jsonl": str(out / "flyover_detections.jsonl"), "runner": run_summary,
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nNEON val (OSBS_029 + SOAP_061), torch: {format_metrics(metrics)}", file=sys.stderr)
    for name, value in (("model", result.checkpoint), ("bundle", bundle), ("report", quantized.report),
                        ("pictures", ", ".join(summary["pictures"]))):  # fmt: skip
        print(f"{name}: {value}", file=sys.stderr)
    print(f"flyover: {summary['annotated']} + {summary['jsonl']}", file=sys.stderr)
    print(f"done in {summary['total_minutes']:.1f} min", file=sys.stderr)
    return summary


def draw_bundle_detections(bundle: Path, coco_json: str | Path, out_dir: Path) -> list[Path]:
    """Run the bundle over every image of a COCO json and draw -> ``out_dir/detections_<name>.jpg``."""
    import cv2

    from lighthead_edge.runtime import Detector
    from lighthead_edge.runtime.draw import draw_detections

    detector = Detector(bundle, backend="openvino", precision="int8")
    paths = []
    for image in image_paths(coco_json):
        frame = cv2.imread(str(image))
        dets = detector(frame)
        picture = draw_detections(frame, dets.boxes, dets.scores, dets.labels, dets.class_names)
        path = out_dir / f"detections_{image.stem}.jpg"
        cv2.imwrite(str(path), picture)
        paths.append(path)
    return paths


def make_flyover(images: list[Path], out: Path, *, window: int = 320, step: int = 4, fps: float = 20.0) -> Path:
    """A "drone flyover" MP4: a ``window``-pixel view panning across the images laid side by side, and back."""
    import cv2
    import numpy as np

    tiles = [cv2.imread(str(p)) for p in images]
    height = min(t.shape[0] for t in tiles)
    strip = np.hstack([t[:height] for t in tiles])
    size = min(window, height)
    xs = list(range(0, strip.shape[1] - size + 1, step))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    try:
        for i, x in enumerate(xs + xs[::-1]):
            y = int((height - size) * (0.5 + 0.5 * np.sin(i / 15)))  # a gentle sway across the strip
            writer.write(np.ascontiguousarray(strip[y : y + size, x : x + size]))
    finally:
        writer.release()
    return out


def run_flyover(bundle: Path, video: Path, out: Path, threads: int | None) -> dict[str, Any]:
    """The video runner over the flyover, exactly as ``lighthead-edge run --video`` would run it."""
    from lighthead_edge.runtime.runner import RunSettings, remember_bundle, run_video
    from lighthead_edge.runtime.sources import SourceKind, SourceSpec

    settings = RunSettings(
        source=SourceSpec(SourceKind.VIDEO, str(video)), model=str(bundle), threads=threads, precision="int8",
        save=str(out / "flyover_detections.mp4"), jsonl=str(out / "flyover_detections.jsonl"),
        summary_json=str(out / "flyover_summary.json"),
    )  # fmt: skip
    summary = run_video(settings)
    remember_bundle(bundle)  # `lighthead-edge run --camera 0` now uses this bundle
    return summary.to_dict()
