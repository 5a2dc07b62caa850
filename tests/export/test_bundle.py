"""The bundle: manifest contents and checksums, metadata inside the artifacts, atomic writes, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lighthead_edge.cli import cli
from lighthead_edge.errors import ExportError
from lighthead_edge.export.bundle import ExportSettings, atomic_directory, check_target, export_bundle
from lighthead_edge.export.onnx import read_metadata
from lighthead_edge.export.openvino import read_rt_info
from lighthead_edge.runtime import BUNDLE_FORMAT, BundleError, load_bundle, sha256_file

EMBEDDED = ["format", "class_names", "labels", "input", "preprocessing", "outputs", "postprocessing", "model",
            "source_checkpoint"]  # fmt: skip


def test_manifest_describes_the_bundle(assets, eager) -> None:
    model, class_names = eager
    manifest = json.loads((assets.bundle / "manifest.json").read_text())
    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["class_names"] == class_names
    h, w = model.config.input_size
    assert manifest["input"] == {"name": "images", "size": [h, w], "shape": [1, h, w, 3], "dtype": "uint8",
                                 "layout": "NHWC", "channel_order": "BGR"}  # fmt: skip
    pre = manifest["preprocessing"]
    assert pre["mean_rgb"] == list(model.config.pixel_mean) and pre["letterbox"]["pad_bgr"] == [104, 116, 124]
    post = manifest["postprocessing"]
    assert (post["score_thresh"], post["nms_thresh"], post["max_detections"]) == (
        model.config.score_thresh, model.config.nms_thresh, model.config.detections_per_img,
    )  # fmt: skip
    assert manifest["source_checkpoint"]["sha256"] == sha256_file(assets.checkpoint)
    kinds = {(a["backend"], a["precision"], a["format"]) for a in manifest["artifacts"]}
    assert kinds == {("onnxruntime", "fp32", "onnx"), ("openvino", "fp32", "openvino-ir"),
                     ("openvino", "fp16", "openvino-ir")}  # fmt: skip
    results = manifest["measurements"]["results"]
    assert set(results) == {"torch/fp32", "onnxruntime/fp32", "openvino/fp32", "openvino/fp16"}
    assert all(r["latency_ms"]["median"] > 0 for k, r in results.items() if k != "torch/fp32")


def test_checksums_cover_every_file(assets) -> None:
    manifest = json.loads((assets.bundle / "manifest.json").read_text())
    on_disk = {p.name for p in assets.bundle.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk == {"model.onnx", "model_fp32.xml", "model_fp32.bin",
                                                 "model_fp16.xml", "model_fp16.bin"}  # fmt: skip
    for name, record in manifest["files"].items():
        path = assets.bundle / name
        assert record == {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    load_bundle(assets.bundle)  # verifies


def test_metadata_travels_inside_the_artifacts(assets) -> None:
    manifest = json.loads((assets.bundle / "manifest.json").read_text())
    expected = {key: manifest[key] for key in EMBEDDED}
    assert read_metadata(assets.bundle / "model.onnx") == expected
    assert read_rt_info(assets.bundle / "model_fp32.xml") == expected
    assert read_rt_info(assets.bundle / "model_fp16.xml") == expected


def _bundle_snapshot(path: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(path.iterdir())}


def _interrupt_at(prefix: str):
    def log(message: str) -> None:
        if message.startswith(prefix):
            raise KeyboardInterrupt

    return log


def test_interrupted_export_leaves_no_bundle(eager, tmp_path) -> None:
    """Interrupted after every artifact and the manifest are written, before the rename: nothing is left."""
    out = tmp_path / "bundle"
    with pytest.raises(KeyboardInterrupt):
        export_bundle(*eager, out, ExportSettings(latency_runs=1), log=_interrupt_at("measuring"))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_keeps_the_existing_bundle(assets, eager, tmp_path) -> None:
    out = tmp_path / "bundle"
    shutil.copytree(assets.bundle, out)
    before = _bundle_snapshot(out)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(*eager, out, log=_interrupt_at("converting to OpenVINO IR FP16"))
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert _bundle_snapshot(out) == before
    load_bundle(out)


def test_atomic_directory_replaces_only_when_complete(tmp_path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("boom")
    assert (target / "a").read_text() == "1"
    with atomic_directory(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_refuses_a_model_in_training_mode(tiny_detector, tmp_path) -> None:
    tiny_detector.train()
    try:
        with pytest.raises(ExportError, match="eval mode"):
            export_bundle(tiny_detector, ["a", "b", "c", "d"], tmp_path / "b")
    finally:
        tiny_detector.eval()
    assert not (tmp_path / "b").exists()


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a bundle"):
        check_target(tmp_path)
    check_target(tmp_path / "new")  # nothing there: fine


def test_cli_export_onnx_only_then_eval(assets, tmp_path) -> None:
    out = tmp_path / "onnx_bundle"
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(assets.checkpoint), "--format", "onnx", "--out", str(out), "--runs",
                                 "1", "--threads", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exporting ONNX" in result.output and "wrote" in result.output
    assert [a.key for a in load_bundle(out).artifacts] == ["onnxruntime/fp32"]

    result = runner.invoke(cli, ["eval", str(out), "--data", str(assets.val_json), "--backend", "onnxruntime",
                                 "--threads", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = json.loads((assets.bundle / "manifest.json").read_text())["measurements"]["results"]
    assert f"AP {expected['onnxruntime/fp32']['coco']['AP']:.3f}" in result.output

    result = runner.invoke(cli, ["eval", str(out), "--data", str(assets.val_json), "--backend", "openvino"])
    assert isinstance(result.exception, BundleError) and "no openvino artifact" in str(result.exception)


def test_a_method_per_backend_exports_two_graphs(eager, tmp_path) -> None:
    import onnx
    import openvino as ov

    out = tmp_path / "bundle"
    methods = {"onnxruntime": "gather", "openvino": "grid_sample"}
    export_bundle(*eager, out, ExportSettings(method=methods, latency_runs=1), log=lambda m: None)
    bundle = load_bundle(out)
    assert {a.key: a.info["ps_roi_align_method"] for a in bundle.artifacts} == {
        "onnxruntime/fp32": "gather", "openvino/fp32": "grid_sample", "openvino/fp16": "grid_sample",
    }  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_checkpoint"] is None  # exported from memory: no file to name
    listed = manifest["files"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *listed])  # OpenVINO's ONNX is gone
    onnx_ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    ov_ops = {op.get_type_name() for op in ov.Core().read_model(str(out / "model_fp32.xml")).get_ops()}
    assert "GatherElements" in onnx_ops and "GridSample" not in onnx_ops
    assert "GridSample" in ov_ops
