"""COCO mAP through pycocotools, for a torch model, for exported bundles through the runtime, and for bare graphs
(:class:`ValSet`, what accuracy control scores its candidates on)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lighthead_edge.errors import DataError
from lighthead_edge.progress import progress as _progress

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_map(
    gt_json: str | Path, results: list[dict[str, Any]], image_ids: Iterable[int] | None = None
) -> dict[str, float]:
    """COCO box metrics of ``results`` (COCO result dicts, bbox as xywh in original pixels) against ``gt_json``.

    Returns AP (0.5:0.95), AP50, AP75, APs/m/l and the AR figures; -1 where COCO has nothing to measure (e.g. no
    large objects). No detections at all gives AP 0, not an error.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from lighthead_edge.data.cocojson import load_coco

    data = load_coco(gt_json)  # validated; COCOeval also needs each box's area and iscrowd, optional in COCO files
    for a in data["annotations"]:
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        a.setdefault("iscrowd", 0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        ids = sorted(image_ids) if image_ids is not None else sorted(gt.getImgIds())
        if not results:
            return {name: (0.0 if name.startswith(("AP", "AR")) else -1.0) for name in METRIC_NAMES}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}


def to_coco_results(
    image_id: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, label_to_cat_id: dict[int, int]
) -> list[dict[str, Any]]:
    """Detections in original-image xyxy pixels -> COCO result dicts."""
    out = []
    for (x1, y1, x2, y2), s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(label_to_cat_id[int(lab)]),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(s), 5),
            }
        )
    return out


def predict_dataset(model, dataset, *, batch_size: int = 4, progress: bool = True, desc: str = "eval") -> list[dict]:
    """Run a torch detector over a ``CocoDetection`` -> COCO results in original-image coordinates."""
    import torch
    from torch.utils.data import DataLoader

    from lighthead_edge.data.coco import collate
    from lighthead_edge.data.transforms import scale_boxes

    if len(dataset) == 0:
        raise DataError(f"{dataset.coco_path}: no images to evaluate")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    was_training = model.training
    model.eval()
    results: list[dict] = []
    try:
        with torch.no_grad():
            for images, targets in _progress(loader, progress, desc):
                for det, tgt in zip(model(images), targets):
                    boxes = scale_boxes(det["boxes"].numpy(), tgt["scale"], tgt["orig_size"])
                    results += to_coco_results(
                        tgt["image_id"], boxes, det["scores"].numpy(), det["labels"].numpy(), dataset.label_to_cat_id
                    )
    finally:
        model.train(was_training)
    return results


def evaluate_model(
    model, json_path: str | Path, *, batch_size: int = 4, progress: bool = True, results_path=None
) -> dict:
    """COCO metrics of a torch detector on a COCO json; optionally write the raw detections to ``results_path``."""
    return evaluate_detections(model, json_path, batch_size=batch_size, progress=progress,
                               results_path=results_path)[0]  # fmt: skip


def evaluate_detections(
    model, json_path: str | Path, *, batch_size: int = 4, progress: bool = True, results_path=None
) -> tuple[dict, list[dict]]:
    """:func:`evaluate_model`'s metrics and the detections they were computed from (COCO result dicts)."""
    from lighthead_edge.data.coco import CocoDetection

    dataset = CocoDetection(json_path, input_size=model.config.input_size, train=False)
    results = predict_dataset(model, dataset, batch_size=batch_size, progress=progress)
    write_results(results_path, results)
    return coco_map(json_path, results, dataset.image_ids), results


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl") if k in metrics)


def evaluate_bundle(
    bundle: str | Path,
    json_path: str | Path,
    *,
    backend: str = "openvino",
    precision: str | None = None,
    device: str = "CPU",
    threads: int | None = None,
    progress: bool = True,
    results_path: str | Path | None = None,
    detector=None,
) -> dict[str, float]:
    """COCO metrics of an exported bundle through the torch-free runtime, on the original images.

    Each image goes through exactly what a device does (:class:`~lighthead_edge.runtime.Detector`: letterbox, the
    exported graph, boxes mapped back), several in flight. ``detector`` reuses an already built one (then
    ``bundle``, ``backend``, ``precision``, ``device`` and ``threads`` are ignored).
    """
    from lighthead_edge.data.cocojson import coco_images
    from lighthead_edge.data.transforms import read_image
    from lighthead_edge.runtime.detector import Detector

    if detector is None:
        detector = Detector(bundle, backend, device=device, threads=threads, precision=precision)
    images, label_to_cat_id = coco_images(json_path, detector.class_names)
    root = Path(json_path).parent
    frames = (read_image(root / im["file_name"]) for im in images)
    results: list[dict] = []
    desc = f"eval {detector.artifact.key}"
    for im, det in _progress(zip(images, detector.stream(frames), strict=True), progress, desc, total=len(images)):
        results += to_coco_results(im["id"], det.boxes, det.scores, det.labels, label_to_cat_id)
    write_results(results_path, results)
    return coco_map(json_path, results, [im["id"] for im in images])


def write_results(path: str | Path | None, results: list[dict]) -> None:
    """Write the raw detections to ``path`` (if any) in one rename, or an :class:`OutputError` (exit 7) naming it."""
    if path is not None:
        from lighthead_edge.runtime.outputs import write_atomic

        write_atomic(path, json.dumps(results), "the detections file")


# ----------------------------------------------------------------------------- scoring bare graphs (accuracy control)
@dataclass(frozen=True)
class ValItem:
    """One val image as a graph reads it: ``image (ndarray[1, H, W, 3] uint8)`` letterboxed by ``scale``, of an
    original ``(h, w)`` image."""

    image_id: int
    image: np.ndarray
    scale: float
    size: tuple[int, int]


class ValSet:
    """A COCO val set letterboxed for one bundle (input size, pad colour, class names checked): read on first use,
    then scored many times by :meth:`ap`, as accuracy control scores its candidate graphs."""

    def __init__(self, json_path: str | Path, bundle) -> None:
        self.json_path = str(json_path)
        self._bundle = bundle

    @cached_property
    def _read(self) -> tuple[list[ValItem], dict[int, int]]:
        from lighthead_edge.data.cocojson import coco_images
        from lighthead_edge.data.transforms import letterbox, read_image

        b = self._bundle
        images, label_to_cat_id = coco_images(self.json_path, b.class_names)
        items = []
        for im in images:
            frame = read_image(Path(self.json_path).parent / im["file_name"])
            image, scale = letterbox(frame, b.input_size, pad_bgr=b.pad_bgr)
            items.append(ValItem(int(im["id"]), image[None], scale, (frame.shape[0], frame.shape[1])))
        return items, label_to_cat_id

    @property
    def items(self) -> list[ValItem]:
        return self._read[0]

    def ap(self, run: Callable[[np.ndarray], dict[str, np.ndarray]], items: Sequence[ValItem] | None = None) -> float:
        """COCO AP (0.5:0.95) of ``run`` (a letterboxed input -> the graph's outputs by name) on ``items`` (all)."""
        from lighthead_edge.data.transforms import scale_boxes

        items = self.items if items is None else items
        results: list[dict] = []
        for item in items:
            o = run(item.image)
            n = int(np.asarray(o["num_detections"]).reshape(-1)[0])
            boxes = scale_boxes(np.asarray(o["boxes"])[0, :n], item.scale, item.size)
            results += to_coco_results(item.image_id, boxes, np.asarray(o["scores"])[0, :n],
                                       np.asarray(o["labels"])[0, :n], self._read[1])  # fmt: skip
        return coco_map(self.json_path, results, [item.image_id for item in items])["AP"]
