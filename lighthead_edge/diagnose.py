"""What limits a detector's AP on a COCO val set (``lighthead-edge eval --diagnose``).

    metrics, diagnosis = evaluate_with_diagnosis(model, "val.json")   # one inference pass, then the diagnosis
    diagnosis = diagnose(model, "val.json", results)                  # detections already computed (COCO results)
    print(format_diagnosis(diagnosis))

Three measurements, each separating one cause of a low AP from the others:

- **per image** (a NEON val image is a site: OSBS_029, SOAP_061): AP and AP50 by pycocotools with ``imgIds``
  restricted to that image, and its ground-truth count: is one site the problem?
- **recall at IoU 0.3, 0.5 and 0.7** (maxDets 100): ground truth that a detection overlaps at 0.3 but not at 0.5 was
  found but badly placed; ground truth missing even at 0.3 was not found at all.
- **box sizes against anchors**: ground-truth sides ``sqrt(w * h)`` in input pixels (after the model's letterbox)
  against the sizes of the RPN's anchors, and the fraction of ground-truth boxes whose best anchor (over every anchor
  the model places on its feature map) reaches the RPN's positive IoU: how many objects the RPN can match at all.

Note:
    The RPN loss also makes each ground-truth box's best anchor positive when it stays under the positive threshold
    (``rpn_loss``), so a box under it is still trained on, from one poorly fitting anchor; a box whose best anchor is
    under 0.3 (the negative threshold) is, in practice, out of the RPN's reach.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lighthead_edge.data.cocojson import load_coco
from lighthead_edge.data.transforms import letterbox_geometry, read_image
from lighthead_edge.errors import DataError
from lighthead_edge.ops.boxes import box_iou

RECALL_IOUS = (0.3, 0.5, 0.7)
COVERAGE_IOUS = (0.3, 0.5)  # besides the RPN's own positive threshold
MAX_DETS = 100
TABLE_IMAGES = 20  # more images than this: the table shows those with the lowest AP50 (all of them in the dict)


def evaluate_with_diagnosis(
    model, json_path: str | Path, *, batch_size: int = 4, progress: bool = True, results_path=None,
    rpn_fg_iou: float | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """``evaluate_model`` plus :func:`diagnose` on the same detections: one inference pass. A json without ground
    truth is refused (``DataError``) before any inference."""
    from lighthead_edge.evaluate import evaluate_detections

    data = ground_truth(json_path)
    metrics, results = evaluate_detections(model, json_path, batch_size=batch_size, progress=progress,
                                           results_path=results_path)  # fmt: skip
    return metrics, _diagnose(model, data, Path(json_path).parent, results, rpn_fg_iou)


def diagnose(
    model, gt_json: str | Path, results: list[dict[str, Any]], *, rpn_fg_iou: float | None = None
) -> dict[str, Any]:
    """What limits ``model``'s AP on ``gt_json``, from its detections ``results`` (COCO result dicts, xywh in
    original pixels, as ``predict_dataset`` returns them).

    Args:
        model: the detector (``LightHeadRCNN``) whose anchors and input size are measured.
        rpn_fg_iou: the RPN's positive IoU [default: ``model.losses.rpn_fg_iou``; pass the one it was trained with].

    Returns:
        A plain dict (JSON-ready): ``images`` (one row per image: ``image_id``, ``file_name``, ``site`` (its
        ``source`` where the json names one, as NEON val images do, else the file's stem), ``num_gt``,
        ``num_dets``, ``AP``, ``AP50``, ``recall`` by IoU, ``gt_size_median``, ``anchor_coverage``), ``recall``
        (overall, by IoU as ``"0.3"``...), ``max_dets`` and ``boxes`` (sizes, anchors, coverage: :func:`box_report`).
        Recall is averaged over the categories with ground truth, as COCO's summary does (with one class: the
        fraction of ground-truth boxes found). COCO's -1 marks what can't be measured (an image without ground
        truth).
    """
    return _diagnose(model, ground_truth(gt_json), Path(gt_json).parent, results, rpn_fg_iou)


def _diagnose(model, data: dict, root: Path, results: list[dict], rpn_fg_iou: float | None) -> dict[str, Any]:
    fg_iou = float(model.losses.rpn_fg_iou if rpn_fg_iou is None else rpn_fg_iou)
    gt, dt = _coco_pair(data, results)
    image_ids = [im["id"] for im in data["images"]]
    overall = _recall(_cocoeval(gt, dt, image_ids, RECALL_IOUS))
    boxes, per_image = box_report(model, data, root, fg_iou)
    counts = {i: 0 for i in image_ids}
    for r in results:
        counts[r["image_id"]] = counts.get(r["image_id"], 0) + 1
    rows = []
    for im in data["images"]:
        ev = _cocoeval(gt, dt, [im["id"]])
        with contextlib.redirect_stdout(io.StringIO()):
            ev.summarize()
        rows.append({
            "image_id": im["id"], "file_name": im["file_name"], "site": _site(im),
            "num_gt": len(gt.getAnnIds(imgIds=[im["id"]], iscrowd=False)), "num_dets": counts[im["id"]],
            "AP": float(ev.stats[0]), "AP50": float(ev.stats[1]),
            "recall": _recall(_cocoeval(gt, dt, [im["id"]], RECALL_IOUS)), **per_image[im["id"]],
        })  # fmt: skip
    return {"images": rows, "recall": overall, "max_dets": MAX_DETS, "boxes": boxes}


def _site(image: dict[str, Any]) -> str:
    """An image's name in the table: its ``source`` (the NEON plot a val image is cut from), else its file's stem."""
    source = image.get("source")
    return source if isinstance(source, str) and source else Path(image["file_name"]).stem


def trained_rpn_fg_iou(payload: dict[str, Any]) -> float | None:
    """The RPN positive IoU a checkpoint's payload says it was trained with (``train.settings.losses``); None when it
    records no training (a loaded model then carries the default ``LossSettings``)."""
    value = payload.get("train")
    for key in ("settings", "losses", "rpn_fg_iou"):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ground_truth(path: str | Path) -> dict:
    """The validated COCO json, with ``area`` and ``iscrowd`` filled in as COCOeval needs them; a ``DataError`` when
    it holds no ground-truth box to measure against."""
    data = load_coco(path)
    for a in data["annotations"]:
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        a.setdefault("iscrowd", 0)
    if not any(not a["iscrowd"] for a in data["annotations"]):
        raise DataError(f"{path} has no ground-truth boxes (no non-crowd annotations): --diagnose measures "
                        "detections against them; give it an annotated val json")  # fmt: skip
    return data


def _coco_pair(data: dict, results: list[dict]):
    """pycocotools' ground truth and detections; no detections at all is an empty result set (AP 0), which
    ``COCO.loadRes`` itself can't take."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        if results:
            dt = gt.loadRes([dict(r) for r in results])  # loadRes adds keys to each dict: leave the caller's alone
        else:
            dt = COCO()
            dt.dataset = {"images": data["images"], "categories": data["categories"], "annotations": []}
            dt.createIndex()
    return gt, dt


def _cocoeval(gt, dt, image_ids: list[int], iou_thrs: tuple[float, ...] | None = None):
    """COCOeval (bbox) evaluated and accumulated on ``image_ids``: COCO's settings, or recall at ``iou_thrs`` with
    ``MAX_DETS`` detections per image."""
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.imgIds = list(image_ids)
    if iou_thrs is not None:
        ev.params.iouThrs = np.array(iou_thrs, dtype=np.float64)
        ev.params.maxDets = [MAX_DETS]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev


def _recall(ev) -> dict[str, float]:
    """Recall by IoU threshold (area 'all', the one maxDets), averaged over the categories that have ground truth,
    as COCO's summary averages; -1 where none has."""
    out = {}
    for t, iou in enumerate(ev.params.iouThrs):
        r = ev.eval["recall"][t, :, 0, 0]
        r = r[r > -1]
        out[f"{iou:g}"] = float(r.mean()) if r.size else -1.0
    return out


# ------------------------------------------------------------------------------------------- box sizes and anchors
def model_anchors(model) -> tuple[torch.Tensor, tuple[int, int]]:
    """Every anchor the model's RPN places for one input (Tensor[h * w * A, 4] xyxy, input pixels) and its feature
    map size ``(h, w)``: the backbone runs once on a blank input of ``config.input_size``, so the map is the one
    inference sees, and the anchors come from the RPN's own generator."""
    h, w = model.config.input_size
    param = next(model.parameters())
    was_training = model.training
    model.eval()  # a blank batch must not move BatchNorm's running statistics
    try:
        with torch.no_grad():
            features = model.backbone(model.normalize(torch.zeros(1, 3, h, w, dtype=param.dtype, device=param.device)))
    finally:
        model.train(was_training)
    return model.rpn.anchors(features).cpu().float(), (int(features.shape[-2]), int(features.shape[-1]))


def best_anchor_iou(boxes: np.ndarray, anchors: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """The best IoU of each box (ndarray[G, 4] xyxy, input pixels) with any of ``anchors`` (Tensor[N, 4]) ->
    ndarray[G]."""
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    best = [box_iou(b[i : i + chunk], anchors).max(dim=1).values for i in range(0, b.shape[0], chunk)]
    return torch.cat(best).numpy() if best else np.zeros(0, dtype=np.float32)


def input_boxes(data: dict, root: Path, input_size: tuple[int, int]) -> dict[int, np.ndarray]:
    """The non-crowd ground truth of each image (ndarray[G, 4] xyxy) in the model's input pixels: clipped to the
    image, then scaled by the letterbox's ``min(H / h, W / w)``. Image sizes come from the json's ``width`` and
    ``height``, or from the image file where the json lacks them."""
    per_image: dict[int, list] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        if not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            per_image[a["image_id"]].append([x, y, x + w, y + h])
    out = {}
    for im in data["images"]:
        h, w = im.get("height"), im.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            h, w = read_image(root / im["file_name"]).shape[:2]
        scale, _ = letterbox_geometry((h, w), input_size)
        boxes = np.array(per_image[im["id"]], dtype=np.float64).reshape(-1, 4)
        np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        out[im["id"]] = (boxes * scale).astype(np.float32)
    return out


def box_report(model, data: dict, root: Path, rpn_fg_iou: float) -> tuple[dict[str, Any], dict[int, dict]]:
    """Ground-truth sizes against the RPN's anchors: overall (``boxes`` of :func:`diagnose`) and per image
    (``gt_size_median``, ``anchor_coverage``)."""
    anchors, feature_map = model_anchors(model)
    num_base = model.config.num_anchors  # anchors are ordered (y, x, anchor): the first cell holds every shape
    shapes = (anchors[:num_base, 2:] - anchors[:num_base, :2]).numpy().astype(np.float64)
    anchor_sizes = sorted({round(float(np.sqrt(w * h)), 3) for w, h in shapes})
    thresholds = sorted({*COVERAGE_IOUS, rpn_fg_iou})
    boxes = input_boxes(data, root, model.config.input_size)
    sizes = {i: np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)) for i, b in boxes.items()}
    best = {i: best_anchor_iou(b, anchors) for i, b in boxes.items()}
    all_sizes, all_best = np.concatenate(list(sizes.values())), np.concatenate(list(best.values()))

    def coverage(ious: np.ndarray) -> dict[str, float]:
        return {f"{t:g}": float((ious >= t).mean()) if ious.size else -1.0 for t in thresholds}

    report = {
        "num_gt": int(all_sizes.size), "input_size": list(model.config.input_size), "stride": int(model.rpn.stride),
        "feature_map": list(feature_map), "num_anchors": int(anchors.shape[0]),
        "anchor_sizes": anchor_sizes, "anchor_shapes": [[round(w, 3), round(h, 3)] for w, h in shapes.tolist()],
        "gt_size_quartiles": [float(q) for q in np.percentile(all_sizes, [0, 25, 50, 75, 100])],
        "below_smallest_anchor": float((all_sizes < anchor_sizes[0]).mean()),
        "above_largest_anchor": float((all_sizes > anchor_sizes[-1]).mean()),
        "rpn_fg_iou": rpn_fg_iou, "anchor_coverage": coverage(all_best),
        "best_anchor_iou_quartiles": [float(q) for q in np.percentile(all_best, [0, 25, 50, 75, 100])],
    }  # fmt: skip
    per_image = {
        i: {"gt_size_median": float(np.median(s)) if s.size else -1.0, "anchor_coverage": coverage(best[i])}
        for i, s in sizes.items()
    }
    return report, per_image


# ------------------------------------------------------------------------------------------------------- the table
def _num(v: float) -> str:
    return "    -" if v < 0 else f"{v:5.3f}"


def _size(v: float) -> str:
    return "    -" if v < 0 else f"{v:5.1f}"


def format_diagnosis(diag: dict[str, Any]) -> str:
    """The diagnosis as a text table: per image, overall recall, then box sizes against anchors, with a reading."""
    b, rec = diag["boxes"], diag["recall"]
    fg = f"{b['rpn_fg_iou']:g}"
    ious = list(rec)
    rows = diag["images"]
    shown = sorted(rows, key=lambda r: r["AP50"])[:TABLE_IMAGES] if len(rows) > TABLE_IMAGES else rows
    width = max(8, *(len(r["site"]) for r in shown))
    head = f"{'image':<{width}}  {'GT':>5}  {'dets':>5}  {'AP':>5}  {'AP50':>5}  " + "  ".join(
        f"{'R@' + t:>5}" for t in ious
    ) + f"  {'size':>5}  {'a>=' + fg:>6}"  # fmt: skip
    lines = [f"diagnosis (recall at maxDets {diag['max_dets']}; GT sizes sqrt(w*h) in input pixels)", head]
    for r in shown:
        lines.append(f"{r['site']:<{width}}  {r['num_gt']:>5}  {r['num_dets']:>5}  {_num(r['AP'])}  "
                     f"{_num(r['AP50'])}  " + "  ".join(_num(r["recall"][t]) for t in ious)
                     + f"  {_size(r['gt_size_median'])}  {_num(r['anchor_coverage'][fg]):>6}")  # fmt: skip
    if len(shown) < len(rows):
        lines.append(f"({len(rows) - len(shown)} more images with a higher AP50: see --json)")
    lines.append(f"{'all':<{width}}  {b['num_gt']:>5}  {'':>5}  {'':>5}  {'':>5}  "
                 + "  ".join(_num(rec[t]) for t in ious))  # fmt: skip
    q = b["gt_size_quartiles"]
    cover = ", ".join(f"{v:.1%} reach IoU {t}" for t, v in b["anchor_coverage"].items())
    lines += [
        f"GT size (px): min {q[0]:.1f}  q1 {q[1]:.1f}  median {q[2]:.1f}  q3 {q[3]:.1f}  max {q[4]:.1f}",
        f"anchors (px): {', '.join(f'{s:g}' for s in b['anchor_sizes'])} (x {len(b['anchor_shapes'])} shapes/cell, "
        f"{b['feature_map'][0]}x{b['feature_map'][1]} cells, stride {b['stride']}); "
        f"{b['below_smallest_anchor']:.1%} of GT below the smallest, {b['above_largest_anchor']:.1%} above the largest",
        f"best anchor IoU per GT box: {cover} (RPN positive: {fg})",
    ]
    if "0.3" in rec and "0.5" in rec and rec["0.3"] >= 0:
        lines.append(f"reading: {1 - rec['0.3']:.1%} of GT not found even at IoU 0.3; "
                     f"{rec['0.3'] - rec['0.5']:.1%} found but badly placed (IoU 0.3-0.5)")  # fmt: skip
    return "\n".join(lines)
