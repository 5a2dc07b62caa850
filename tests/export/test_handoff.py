"""Hand-offs (``export --layout detection_output``, ``--ovms DIR``): the detection_output IR against the bundle's
own graph and against DL Streamer's and model_api's documented readers, and the OVMS model repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from exported import ExportedAssets

from lighthead_edge.data.transforms import read_image
from lighthead_edge.export.bundle import remove_leftovers
from lighthead_edge.export.handoff import OVMS_MARKER, ovms_stage, write_ovms_repository
from lighthead_edge.runtime.bundle import load_bundle, sha256_file
from lighthead_edge.runtime.detector import Detector

CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def handoff_export(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real command: ``export CHECKPOINT --format openvino --layout detection_output --ovms DIR``."""
    from lighthead_edge.cli import cli

    root = tmp_path_factory.mktemp("handoff")
    out, ovms = root / "bundle", root / "ovms"
    args = ["export", str(assets.checkpoint), "--out", str(out), "--format", "openvino", "--runs", "1",
            "--threads", "1", "--layout", "detection_output", "--ovms", str(ovms)]  # fmt: skip
    cli.main(args=args, standalone_mode=False)
    return {"bundle": out, "ovms": ovms}


@pytest.fixture(scope="module")
def val_frames(assets: ExportedAssets) -> list[np.ndarray]:
    data = json.loads(assets.val_json.read_text())
    return [read_image(assets.val_json.parent / image["file_name"]) for image in data["images"]]


def _compiled(path: Path) -> ov.CompiledModel:
    return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_rows_equal_the_bundle_outputs(handoff_export, val_frames, precision: str) -> None:
    bundle = handoff_export["bundle"]
    native = _compiled(bundle / f"model_{precision}.xml")
    rows7 = _compiled(bundle / f"model_detection_output_{precision}.xml")
    det = Detector(bundle, backend="openvino", precision=precision, threads=1)
    _, h, w, _ = load_bundle(bundle).input_shape
    counts = []
    for frame in val_frames:
        image = det.preprocess(frame).input  # letterboxed as the runtime does
        ref, got = native(image), rows7(image)[0]
        n, d = int(ref["num_detections"][0]), ref["boxes"].shape[1]
        counts.append(n)
        assert got.shape == (1, 1, d, 7) and got.dtype == np.float32
        rows = got[0, 0]
        assert np.array_equal(rows[:n, 0], np.zeros(n)) and np.array_equal(rows[n:, 0], -np.ones(d - n))
        assert np.array_equal(rows[:, 1], ref["labels"][0].astype(np.float32))
        assert np.array_equal(rows[:, 2], ref["scores"][0])
        np.testing.assert_allclose(rows[:, 3:] * [w, h, w, h], ref["boxes"][0], rtol=0, atol=1e-4)
    assert max(counts) > 0 and min(counts) < d, counts  # both detections and padding rows were compared


def test_model_info_is_what_dl_streamer_reads(handoff_export) -> None:
    model = ov.Core().read_model(str(handoff_export["bundle"] / "model_detection_output_fp32.xml"))
    info = {k: model.get_rt_info(["model_info", k]).astype(str) for k in model.get_rt_info(["model_info"]).astype(dict)}
    # https://dlstreamer.github.io/dev_guide/model_info_xml.html (docs/source/dev_guide/model_info_xml.md): model_type
    # picks the converter ("detection_output"), labels are space-separated and indexed by label id (DL Streamer's
    # getLabelByLabelId: labels.at(label_id)), resize_type one of crop/standard/fit_to_window/fit_to_window_letterbox,
    # reverse_input_channels True/False, thresholds in [0, 1]; pad_value and layout are model_api's
    # (docs/source/guides/model-configuration.md).
    assert info == {
        "model_type": "detection_output",
        "labels": "background circle square triangle star",
        "resize_type": "fit_to_window",
        "reverse_input_channels": "False",
        "confidence_threshold": "0.05",
        "iou_threshold": "0.5",
        "pad_value": "115",
        "layout": "images:NHWC",
    }
    # DL Streamer's DetectionOutputConverter: one FP32 blob, last dim 7, every dim before the last two is 1
    assert len(model.outputs) == 1 and model.outputs[0].get_element_type() == ov.Type.f32
    assert list(model.outputs[0].get_shape())[:2] == [1, 1] and model.outputs[0].get_shape()[3] == 7
    assert model.inputs[0].get_node().get_layout() == ov.Layout("NHWC")


def _model_api_decode(rows: np.ndarray, info: dict[str, str], size: tuple[int, int], frame_hw: tuple[int, int]):
    """model_api's SSD with its single-output parser (src/python/model_api/models/ssd.py, detection_model.py):
    every row, boxes * input size * max(frame / input) for resize_type fit_to_window (no pad offset), rounded and
    clipped to the frame, kept when area > 1 and score > confidence_threshold, named labels[label]."""
    (h, w), (fh, fw) = size, frame_hw
    inv = max(fw / w, fh / h)
    boxes = np.round(rows[:, 3:] * [w, h, w, h] * inv)
    boxes = np.clip(boxes, 0, [fw, fh, fw, fh]).astype(np.int32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (area > 1.0) & (rows[:, 2] > float(info["confidence_threshold"]))
    labels = info["labels"].split()
    return [(labels[int(lab)], float(s), b.tolist()) for lab, s, b in zip(rows[keep, 1], rows[keep, 2], boxes[keep])]


def _dl_streamer_decode(rows: np.ndarray, info: dict[str, str]) -> list[tuple[str, float]]:
    """DL Streamer's DetectionOutputConverter::parseOutputBlob: stop at the first image_id < 0, skip confidence <
    threshold, name labels.at(label_id)."""
    labels, found = info["labels"].split(), []
    for image_id, label, score, *_ in rows:
        if image_id < 0:
            break
        if score >= float(info["confidence_threshold"]):
            found.append((labels[int(label)], float(score)))
    return found


def test_readers_decode_the_runtime_detections(handoff_export, val_frames) -> None:
    bundle = handoff_export["bundle"]
    model = ov.Core().read_model(str(bundle / "model_detection_output_fp32.xml"))
    info = {k: model.get_rt_info(["model_info", k]).astype(str) for k in model.get_rt_info(["model_info"]).astype(dict)}
    rows7 = _compiled(bundle / "model_detection_output_fp32.xml")
    det = Detector(bundle, backend="openvino", precision="fp32", threads=1)
    size, total = load_bundle(bundle).input_size, 0
    assert det.class_names == CLASSES
    for frame in val_frames:
        ours = det(frame)
        rows = rows7(det.preprocess(frame).input)[0][0, 0]
        fh, fw = frame.shape[:2]
        boxes = np.clip(np.round(ours.boxes), 0, [fw, fh, fw, fh])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = (area > 1.0) & (ours.scores > 0.05)
        expected = [(CLASSES[lab - 1], float(s)) for lab, s in zip(ours.labels[keep], ours.scores[keep])]
        decoded = _model_api_decode(rows, info, size, (fh, fw))
        assert [(name, s) for name, s, _ in decoded] == expected
        got_boxes = np.array([b for *_, b in decoded]).reshape(-1, 4)
        assert np.abs(got_boxes - boxes[keep]).max(initial=0) <= 1  # a .5 rounded either way, at most
        assert _dl_streamer_decode(rows, info) == [(CLASSES[lab - 1], float(s)) for lab, s in
                                                   zip(ours.labels, ours.scores)]  # fmt: skip
        total += len(expected)
    assert total > 0


def test_bundle_records_the_handoff_files(handoff_export) -> None:
    bundle = load_bundle(handoff_export["bundle"])  # every checksum verified, the new files included
    files = bundle.manifest["files"]
    names = [f"model_detection_output_{p}.{e}" for p in ("fp32", "fp16") for e in ("xml", "bin")]
    assert all(files[n]["sha256"] == sha256_file(bundle.root / n) for n in names)
    record = bundle.manifest["handoffs"]
    assert [a["path"] for a in record["detection_output"]["artifacts"]] == [names[0], names[2]]
    assert record["detection_output"]["model_info"]["model_type"] == "detection_output"
    assert record["ovms"]["models"] == ["lighthead", "lighthead_detection_output"]
    assert {a.key for a in bundle.artifacts} == {"openvino/fp32", "openvino/fp16"}  # the artifacts are unchanged


def test_ovms_repository(handoff_export, val_frames) -> None:
    repo, bundle = handoff_export["ovms"], handoff_export["bundle"]
    config = json.loads((repo / "config.json").read_text())
    # https://docs.openvino.ai/2025/model-server/ovms_docs_parameters.html: model_config_list of {"config": {"name",
    # "base_path"}}, base_path relative to config.json; ovms_docs_models_repository.html: <base_path>/<version>/
    # with a positive integer version and the IR's .xml and .bin in it
    assert config == {"model_config_list": [
        {"config": {"name": "lighthead", "base_path": "lighthead"}},
        {"config": {"name": "lighthead_detection_output", "base_path": "lighthead_detection_output"}},
    ]}  # fmt: skip
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        "config.json", OVMS_MARKER, "lighthead/1/model.bin", "lighthead/1/model.xml",
        "lighthead_detection_output/1/model.bin", "lighthead_detection_output/1/model.xml",
    ]  # fmt: skip
    assert sha256_file(repo / "lighthead/1/model.bin") == sha256_file(bundle / "model_fp32.bin")
    served = _compiled(repo / "lighthead/1/model.xml")
    image = Detector(bundle, backend="openvino", threads=1).preprocess(val_frames[0]).input
    ref = _compiled(bundle / "model_fp32.xml")(image)
    got = served(image)
    assert all(np.array_equal(got[name], ref[name]) for name in ("boxes", "scores", "labels", "num_detections"))
    assert _compiled(repo / "lighthead_detection_output/1/model.xml")(image)[0].shape[-1] == 7


def test_ovms_refuses_a_folder_it_did_not_write(cli, assets: ExportedAssets, tmp_path: Path) -> None:
    ovms = tmp_path / "models"
    ovms.mkdir()
    (ovms / "notes.txt").write_text("mine")
    code, _, err = cli("export", assets.checkpoint, "--out", tmp_path / "b", "--format", "openvino", "--ovms", ovms)
    assert code == 5 and len(err.strip().splitlines()) == 1
    assert "not an OVMS repository lighthead-edge wrote" in err and "Traceback" not in err
    assert [p.name for p in ovms.iterdir()] == ["notes.txt"] and not (tmp_path / "b").exists()
    code, _, err = cli("export", assets.checkpoint, "--out", tmp_path / "b", "--ovms", tmp_path / "b" / "ovms")
    assert code == 5 and "overlap" in err and not (tmp_path / "b").exists()
    code, _, err = cli("export", assets.checkpoint, "--out", tmp_path / "b", "--format", "onnx", "--layout",
                       "detection_output")  # fmt: skip
    assert code == 2 and "add openvino to --format" in err and len(err.strip().splitlines()) == 1


def test_ovms_rewrite_keeps_what_a_user_added(handoff_export, tmp_path: Path) -> None:
    """A repository lighthead-edge wrote is replaced whole, and a file a user put there is carried over."""
    import shutil

    repo = tmp_path / "ovms"
    shutil.copytree(handoff_export["ovms"], repo)
    (repo / "README.txt").write_text("served by the lab box")
    handoffs = load_bundle(handoff_export["bundle"]).manifest["handoffs"]
    with ovms_stage(repo, lambda m: None, remove_leftovers=remove_leftovers) as staged:
        write_ovms_repository(staged, handoff_export["bundle"], {}, "cam1", lambda m: None)
    assert sorted(p.name for p in repo.iterdir()) == ["README.txt", "cam1", "config.json", OVMS_MARKER]
    assert json.loads((repo / OVMS_MARKER).read_text())["models"] == ["cam1"]
    assert "ovms" in handoffs and not list(tmp_path.glob(".ovms.*"))  # no staging folder left behind
