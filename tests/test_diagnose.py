"""``eval --diagnose`` (lighthead_edge/diagnose.py): per-image AP against pycocotools run by hand, recall by IoU,
anchors against the RPN's own generator, anchor coverage of hand-placed boxes, and the CLI's table, json and errors.

The checkpoint is the tiny trained one the shared ``assets`` use (:data:`exported.CHECKPOINT`), on the same val split
(16 synthetic 120x160 images, seed 0), generated here without the bundle that ``assets`` also exports: seconds, not a
minute."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from exported import CHECKPOINT, NUM_VAL, VAL_SIZE
from test_cli_errors import assert_one_line_error


@pytest.fixture(scope="module")
def model():
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    return load_checkpoint(CHECKPOINT)[0]


@pytest.fixture(scope="module")
def val_json(tmp_path_factory) -> Path:
    from lighthead_edge.data.synth import generate_dataset

    data = generate_dataset(tmp_path_factory.mktemp("diag"), 1, NUM_VAL, size=VAL_SIZE, seed=0, progress=False)
    return Path(data["val"])


@pytest.fixture(scope="module")
def run(model, val_json) -> dict:
    """metrics, results (the detections written beside them) and the diagnosis of one inference pass."""
    from lighthead_edge.diagnose import evaluate_with_diagnosis

    det_path = val_json.parent / "dets.json"
    metrics, diag = evaluate_with_diagnosis(model, val_json, progress=False, results_path=det_path)
    return {"metrics": metrics, "results": json.loads(det_path.read_text()), "diag": diag}


def _by_hand(gt_json: Path, results: list[dict], iou_thrs=None, max_dets=None):
    """pycocotools as its README runs it, on files: COCO(gt), loadRes(dets), COCOeval, summarize (COCO's settings
    only: its summary reads maxDets[2])."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iouType="bbox")
        if iou_thrs is not None:
            ev.params.iouThrs = np.array(iou_thrs)
        if max_dets is not None:
            ev.params.maxDets = max_dets
        ev.evaluate()
        ev.accumulate()
        if max_dets is None:
            ev.summarize()
    return ev


def test_per_image_ap_is_pycocotools_on_a_one_image_json(run, val_json, tmp_path):
    data = json.loads(val_json.read_text())
    rows = run["diag"]["images"]
    assert [r["image_id"] for r in rows] == [im["id"] for im in data["images"]]
    for im, row in zip(data["images"], rows):
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        one = tmp_path / f"{im['id']}.json"
        one.write_text(json.dumps({**data, "images": [im], "annotations": anns}))
        dets = [r for r in run["results"] if r["image_id"] == im["id"]]
        ev = _by_hand(one, dets)
        assert row["site"] == Path(im["file_name"]).stem
        assert (row["num_gt"], row["num_dets"]) == (len(anns), len(dets))
        assert row["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
        assert row["AP50"] == pytest.approx(ev.stats[1], abs=1e-12)
    aps = [r["AP50"] for r in rows]
    assert max(aps) > 0.1 and min(aps) == 0.0  # the trained model finds some images and misses others


def test_recall_by_iou(run, val_json):
    diag = run["diag"]
    rec = diag["recall"]
    assert list(rec) == ["0.3", "0.5", "0.7"] and diag["max_dets"] == 100
    assert rec["0.3"] >= rec["0.5"] >= rec["0.7"] and rec["0.3"] > rec["0.7"]
    for row in diag["images"]:
        r = row["recall"]
        assert r["0.3"] >= r["0.5"] >= r["0.7"]
    # the same figures as pycocotools' own recall at IoU 0.5 (COCO thresholds) and 0.3 (set by hand), maxDets 100
    coco = _by_hand(val_json, run["results"])
    assert rec["0.5"] == pytest.approx(np.mean(coco.eval["recall"][0, :, 0, 2]), abs=1e-12)
    low = _by_hand(val_json, run["results"], iou_thrs=[0.3], max_dets=[100])
    assert rec["0.3"] == pytest.approx(np.mean(low.eval["recall"][0, :, 0, 0]), abs=1e-12)


def test_anchors_are_the_rpns(model, val_json, run):
    from lighthead_edge.data.coco import CocoDetection
    from lighthead_edge.diagnose import model_anchors

    seen = []
    hook = model.rpn.register_forward_hook(lambda module, args, out: seen.append(out[3]))
    try:
        with torch.no_grad():
            model(CocoDetection(val_json, input_size=model.config.input_size)[0][0][None])
    finally:
        hook.remove()
    anchors, feature_map = model_anchors(model)
    assert torch.equal(anchors, seen[0])
    c = model.config
    assert feature_map == (c.input_size[0] // c.stride, c.input_size[1] // c.stride)
    boxes = run["diag"]["boxes"]
    wh = seen[0][:, 2:] - seen[0][:, :2]
    assert boxes["anchor_sizes"] == sorted({round(float(s), 3) for s in (wh[:, 0] * wh[:, 1]).sqrt()})
    assert boxes["anchor_sizes"] == [s * c.stride for s in c.anchor_scales]  # 32 ... 512 px
    assert boxes["num_anchors"] == seen[0].shape[0] == feature_map[0] * feature_map[1] * c.num_anchors
    assert boxes["rpn_fg_iou"] == 0.7 and boxes["feature_map"] == list(feature_map)


def test_sizes_are_in_input_pixels(run, val_json):
    data = json.loads(val_json.read_text())
    scale = min(128 / VAL_SIZE[0], 128 / VAL_SIZE[1])  # the letterbox of 120x160 into 128x128: 0.8
    sides = np.sort([np.sqrt(a["bbox"][2] * a["bbox"][3]) * scale for a in data["annotations"]])
    q = run["diag"]["boxes"]["gt_size_quartiles"]
    assert q[0] == pytest.approx(sides[0], rel=1e-5) and q[4] == pytest.approx(sides[-1], rel=1e-5)
    assert q[2] == pytest.approx(np.median(sides), rel=1e-5)
    assert run["diag"]["boxes"]["below_smallest_anchor"] == pytest.approx(np.mean(sides < 32))


def test_anchor_coverage_of_boxes_placed_by_hand(model, tmp_path):
    """A 256x192 image (a NEON site, named by its ``source``) letterboxed by 0.5: a box that is exactly an anchor in
    input pixels (IoU 1), and a 2 px box (1 px in the input, far under the 32 px smallest anchor: IoU < 0.3). No
    detections: AP and recall 0."""
    from lighthead_edge.diagnose import best_anchor_iou, diagnose, model_anchors, trained_rpn_fg_iou

    anchors, _ = model_anchors(model)
    square = anchors[(anchors[:, 2] - anchors[:, 0] == 32) & (anchors[:, 3] - anchors[:, 1] == 32)]
    anchor = square[(square[:, :2] > 0).all(dim=1)][0]  # a whole 32 px anchor inside the image (none is clipped)
    x1, y1, x2, y2 = (2 * anchor).tolist()  # back to original pixels
    tiny = [100.0, 60.0, 2.0, 2.0]
    names = ["circle", "square", "triangle", "star"]
    coco = {"images": [{"id": 7, "file_name": "images/val_OSBS_029.png", "source": "OSBS_029", "width": 256,
                        "height": 192}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]},
                            {"id": 2, "image_id": 7, "category_id": 1, "bbox": tiny}],
            "categories": [{"id": i, "name": n} for i, n in enumerate(names, 1)]}  # fmt: skip
    (tmp_path / "val.json").write_text(json.dumps(coco))

    best = best_anchor_iou(np.array([anchor.tolist(), [50, 30, 51, 31]]), anchors)
    assert best[0] == 1.0 and best[1] < 0.3
    diag = diagnose(model, tmp_path / "val.json", [], rpn_fg_iou=trained_rpn_fg_iou({"train": None}))
    b = diag["boxes"]
    assert b["anchor_coverage"] == {"0.3": 0.5, "0.5": 0.5, "0.7": 0.5}
    assert b["best_anchor_iou_quartiles"][4] == 1.0 and b["best_anchor_iou_quartiles"][0] < 0.3
    assert b["gt_size_quartiles"][0] == pytest.approx(1.0) and b["gt_size_quartiles"][4] == pytest.approx(32.0)
    assert b["below_smallest_anchor"] == 0.5 and b["above_largest_anchor"] == 0.0
    (row,) = diag["images"]
    assert (row["site"], row["num_gt"], row["num_dets"], row["AP"], row["AP50"]) == ("OSBS_029", 2, 0, 0.0, 0.0)
    assert row["recall"] == {"0.3": 0.0, "0.5": 0.0, "0.7": 0.0} and diag["recall"]["0.3"] == 0.0

    # the RPN's positive threshold is the one the checkpoint was trained with
    fg = trained_rpn_fg_iou({"train": {"settings": {"losses": {"rpn_fg_iou": 0.6}}}})
    assert fg == 0.6 and trained_rpn_fg_iou({"train": {"settings": {"losses": None}}}) is None
    assert diagnose(model, tmp_path / "val.json", [], rpn_fg_iou=fg)["boxes"]["anchor_coverage"] == {
        "0.3": 0.5, "0.5": 0.5, "0.6": 0.5}  # fmt: skip


def test_cli_prints_the_table_and_writes_the_diagnosis(cli, model, run, val_json, tmp_path):
    from lighthead_edge.diagnose import diagnose

    data = json.loads(val_json.read_text())
    images = data["images"][:4]  # the first batch of the module's run: the same detections, a quarter of the time
    ids = {im["id"] for im in images}
    four = val_json.parent / "four.json"
    four.write_text(json.dumps({**data, "images": images,
                                "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))  # fmt: skip
    out = tmp_path / "metrics.json"
    code, stdout, err = cli("eval", CHECKPOINT, "--data", four, "--diagnose", "--json", out)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith(f"{CHECKPOINT.name} on four.json: AP ")
    assert lines[1].startswith("diagnosis (recall at maxDets 100")
    assert [line.split()[0] for line in lines[3:7]] == [Path(im["file_name"]).stem for im in images]
    dets = json.loads(out.with_suffix(".detections.json").read_text())
    assert dets == [r for r in run["results"] if r["image_id"] in ids]
    expected = diagnose(model, four, dets)
    assert any(line.startswith("all ") and f"{expected['recall']['0.3']:.3f}" in line for line in lines), stdout
    assert "anchors (px): 32, 64, 128, 256, 512" in stdout and "best anchor IoU per GT box:" in stdout
    assert json.loads(out.read_text())["diagnosis"] == expected

    code, stdout, _ = cli("eval", CHECKPOINT, "--data", four)  # without --diagnose: the metrics line only
    assert code == 0 and len(stdout.splitlines()) == 1


def test_cli_refuses_a_val_json_without_annotations(cli, val_json, tmp_path):
    data = json.loads(val_json.read_text())
    empty = tmp_path / "empty.json"  # its images are not there either: the check comes before any inference
    empty.write_text(json.dumps({**data, "annotations": []}))
    code, stdout, err = cli("eval", CHECKPOINT, "--data", empty, "--diagnose", "--json", tmp_path / "m.json")
    assert_one_line_error(code, err, "has no ground-truth boxes")
    assert code == 3 and stdout == "" and not (tmp_path / "m.json").exists()


def test_cli_refuses_diagnose_on_a_bundle(cli, val_json, tmp_path):
    code, _, err = cli("eval", tmp_path, "--data", val_json, "--diagnose")
    assert_one_line_error(code, err, "--diagnose measures a model.pt")
    assert code == 2
