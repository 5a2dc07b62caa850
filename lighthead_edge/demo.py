"""The built-in demo: real data, a trained model that ships with the project, the whole job on a default.

NEON airborne tree crowns -> the shipped mobilenet_v2-S Light-Head R-CNN (``models/neon-mbv2-s.pt``, checked against
``models/SHA256SUMS``) -> COCO mAP on the held-out tiles -> ``tune`` on this CPU (RoI budget and INT8 layers, the
fastest OpenVINO bundle within the AP budget, with its AP-against-latency report) -> pictures of the INT8 detections
-> a drone flyover through the video runner. ``fine_tune=True`` starts from ImageNet weights instead and fine-tunes
for ``minutes`` first: the whole training path (held-out AP50 0.546 after 6 minutes, 163 iterations, on a 2-vCPU
AVX-512 Xeon; the shipped model's 0.585).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from lighthead_edge.config import ModelConfig, TrainConfig
from lighthead_edge.data.cocojson import image_paths
from lighthead_edge.errors import CheckpointError

# trees are small (median ~35 px at 10 cm/px): a 512 input and anchors from 16 px up
DEMO_MODEL = ModelConfig(backbone="mobilenet_v2", head_size="S", input_size=(512, 512), anchor_scales=(1, 2, 4, 8, 16))
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"  # a source checkout (the README's set-up)
SHIPPED_MODEL = MODELS_DIR / "neon-mbv2-s.pt"
DEMO_ROIS = (50, 100, 200)  # tried besides the model's own 300
DEMO_MAX_DROP = 0.005  # half an AP point
HOLDOUT = 0.25
FLYOVER_TILES = 3


def _step(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def verified_checkpoint(path: str | Path) -> Path:
    """``path``, after checking its sha256 against ``SHA256SUMS`` beside it when that lists it: a shipped file that
    was truncated, or is a Git LFS pointer, fails here with one line instead of deep inside loading."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model not found: {path}; make it with `python scripts/train_reference.py ship`, or "
                              "run the demo with --fine-tune")  # fmt: skip
    sums = path.parent / "SHA256SUMS"
    listed = {}
    if sums.is_file():
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            listed[name.strip()] = digest.strip()
    if path.name in listed:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != listed[path.name]:
            raise CheckpointError(f"{path} does not match its sha256 in {sums} ({digest[:12]} against "
                                  f"{listed[path.name][:12]}): the file is damaged or not the shipped one; "
                                  "restore it with git (`git checkout -- models/`)")  # fmt: skip
    return path


def run_demo(
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    fine_tune: bool = False,
    minutes: float = 6.0,
    iters: int = 450,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return its summary (also written to ``out_dir/summary.json``)."""
    from lighthead_edge.compress.tune import TuneSettings, tune_checkpoint
    from lighthead_edge.data.neon import prepare_neon
    from lighthead_edge.evaluate import evaluate_model, format_metrics
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    out = Path(out_dir)
    n = 6
    started = time.perf_counter()
    checkpoint = None if fine_tune else verified_checkpoint(model or SHIPPED_MODEL)  # before any work
    _step(1, n, f"NEON tree-crown data (held-out strip {HOLDOUT:g}) -> {out / 'data'}")
    data = prepare_neon(out / "data", holdout=HOLDOUT, progress=True)
    if fine_tune:
        checkpoint, train_minutes = _fine_tune(out, data, minutes=minutes, iters=iters, threads=threads, step=(2, n))
    else:
        train_minutes = 0.0
        _step(2, n, f"the trained model {checkpoint} (sha256 checked)")
    _step(3, n, "COCO mAP of the torch model: held-out tiles and the two cross-site plots (pycocotools)")
    net, _, _ = load_checkpoint(checkpoint)
    metrics = evaluate_model(net, data["holdout"], results_path=out / "detections.json")
    cross_site = evaluate_model(net, data["val"])
    _step(4, n, f"tune on this CPU: RoI budgets {list(DEMO_ROIS)} + the model's own, INT8 (latency-aware), "
                f"OpenVINO, AP budget {DEMO_MAX_DROP:g}; calibrated on the training tiles")  # fmt: skip
    settings = TuneSettings(val_json=str(data["holdout"]), rois=DEMO_ROIS, max_drop=DEMO_MAX_DROP,
                            threads=threads or 2)  # fmt: skip
    tuned = tune_checkpoint(checkpoint, out / "bundle", calib=data["train"], settings=settings)
    _step(5, n, "drawing the tuned bundle's detections (torch-free runtime, OpenVINO INT8)")
    pictures = draw_bundle_detections(tuned.bundle, data["holdout"], out)
    _step(6, n, "a drone flyover of held-out tiles through the video runner -> MP4 + JSONL")
    video = make_flyover(image_paths(data["holdout"])[:FLYOVER_TILES], out / "flyover.mp4")
    run_summary = run_flyover(tuned.bundle, video, out, threads)
    summary = {
        "model": str(checkpoint), "fine_tuned": fine_tune, "bundle": str(tuned.bundle),
        "train_minutes": round(train_minutes, 2), "metrics": metrics, "cross_site_metrics": cross_site,
        "tune": {"report": str(tuned.report), "reference": _point(tuned.reference), "chosen": _point(tuned.chosen)},
        "pictures": [str(p) for p in pictures], "flyover": str(video), "annotated": str(out / "flyover_detections.mp4"),
        "jsonl": str(out / "flyover_detections.jsonl"), "runner": run_summary,
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, tuned, format_metrics(metrics), format_metrics(cross_site))
    return summary


def _fine_tune(out: Path, data: dict, *, minutes: float, iters: int, threads: int | None, step: tuple[int, int]):
    """ImageNet MobileNetV2 -> ``out/model.pt``, fine-tuned on the training tiles, picked on the held-out ones."""
    from lighthead_edge.modeling.pretrained import imagenet_mobilenet_v2
    from lighthead_edge.train import train

    weights = imagenet_mobilenet_v2()
    _step(*step, f"fine-tuning ImageNet mobilenet_v2-S at {DEMO_MODEL.input_size[0]}px for up to {iters} "
                 f"iterations / {minutes:g} min")  # fmt: skip
    result = train(
        train_json=data["train"], val_json=data["holdout"], out=out / "model.pt", model_config=DEMO_MODEL,
        train_config=TrainConfig(iters=iters, batch_size=4, warmup_iters=50, max_minutes=minutes, threads=threads,
                                 augment="aerial", eval_every=5),
        pretrained=weights,
    )  # fmt: skip
    return result.checkpoint, result.seconds / 60


def _point(p: Any) -> dict[str, Any]:
    return {"label": p.label, "rois": p.rois, "AP": p.ap, "AP50": p.ap50, "latency_ms": p.latency_ms}


def _print_summary(summary: dict[str, Any], tuned: Any, held_out: str, cross_site: str) -> None:
    ref, chosen = tuned.reference, tuned.chosen
    print(f"\nNEON held-out tiles, torch: {held_out}", file=sys.stderr)
    print(f"NEON cross-site plots (OSBS_029 + SOAP_061), torch: {cross_site}", file=sys.stderr)
    print(f"tune: FP32 @{ref.rois} AP {ref.ap:.3f} {ref.latency_ms:.1f} ms -> {chosen.label} AP {chosen.ap:.3f} "
          f"{chosen.latency_ms:.1f} ms ({chosen.latency_ms / ref.latency_ms:.2f}x)", file=sys.stderr)  # fmt: skip
    for name in ("model", "bundle"):
        print(f"{name}: {summary[name]}", file=sys.stderr)
    print(f"report: {summary['tune']['report']} (+ tune.png)", file=sys.stderr)
    print(f"pictures: {', '.join(summary['pictures'][:3])}, ... ({len(summary['pictures'])})", file=sys.stderr)
    print(f"flyover: {summary['annotated']} + {summary['jsonl']}", file=sys.stderr)
    print(f"done in {summary['total_minutes']:.1f} min", file=sys.stderr)


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
