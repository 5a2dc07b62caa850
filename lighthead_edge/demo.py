"""The built-in demo: real data, a real pretrained backbone, the whole job on a default, with progress.

NEON airborne tree crowns (train on tiles of two YELL scenes, evaluate on OSBS_029 + SOAP_061) -> fine-tune an
ImageNet MobileNetV2 Light-Head R-CNN (S) -> COCO mAP -> pictures of the detections -> a summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from lighthead_edge.config import ModelConfig, TrainConfig


def _step(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def run_demo(
    out_dir: str | Path, *, minutes: float = 6.0, iters: int = 450, threads: int | None = None
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return its summary (also written to ``out_dir/summary.json``)."""
    from lighthead_edge.data.neon import prepare_neon
    from lighthead_edge.evaluate import evaluate_model, format_metrics
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.modeling.pretrained import imagenet_mobilenet_v2
    from lighthead_edge.train import train

    out = Path(out_dir)
    n = 5
    started = time.perf_counter()
    _step(1, n, f"NEON tree-crown data -> {out / 'data'}")
    data = prepare_neon(out / "data", progress=True)
    _step(2, n, "ImageNet MobileNetV2 weights (cached after the first run)")
    weights = imagenet_mobilenet_v2()
    _step(3, n, f"fine-tuning mobilenet_v2-S at 416x416 for up to {iters} iterations / {minutes:g} min")
    result = train(
        train_json=data["train"], val_json=data["val"], out=out / "model.pt",
        model_config=ModelConfig(backbone="mobilenet_v2", head_size="S", input_size=(416, 416)),
        train_config=TrainConfig(iters=iters, batch_size=4, warmup_iters=50, max_minutes=minutes, threads=threads,
                                 eval_every=1000),
        pretrained=weights,
    )  # fmt: skip
    _step(4, n, "COCO mAP on the held-out scenes (pycocotools)")
    model, classes, _ = load_checkpoint(result.checkpoint)
    metrics = evaluate_model(model, data["val"], results_path=out / "detections.json")
    _step(5, n, "drawing detections")
    pictures = draw_dataset(model, classes, data["val"], out)
    summary = {
        "model": str(result.checkpoint), "train_minutes": round(result.seconds / 60, 2), "metrics": metrics,
        "pictures": [str(p) for p in pictures], "total_minutes": round((time.perf_counter() - started) / 60, 2),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nNEON val (OSBS_029 + SOAP_061): {format_metrics(metrics)}", file=sys.stderr)
    print(f"model: {result.checkpoint}\npictures: {', '.join(summary['pictures'])}", file=sys.stderr)
    return summary


def draw_dataset(model, class_names: list[str], coco_json: str | Path, out_dir: Path) -> list[Path]:
    """Draw a torch model's detections on every image of a COCO json -> ``out_dir/detections_<name>.jpg``."""
    import cv2
    import torch

    from lighthead_edge.data.coco import CocoDetection
    from lighthead_edge.data.transforms import scale_boxes
    from lighthead_edge.runtime.draw import draw_detections

    dataset = CocoDetection(coco_json, input_size=model.config.input_size)
    paths = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        with torch.no_grad():
            det = model(image[None])[0]
        boxes = scale_boxes(det["boxes"].numpy(), target["scale"], target["orig_size"])
        original = cv2.imread(str(dataset.image_path(i)))
        picture = draw_detections(original, boxes, det["scores"].numpy(), det["labels"].numpy(), class_names)
        path = out_dir / f"detections_{dataset.image_path(i).stem}.jpg"
        cv2.imwrite(str(path), picture)
        paths.append(path)
    return paths
