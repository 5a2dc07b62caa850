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
from lighthead_edge.runtime.bundle import (
    REPORT_FILES,
    Backend,
    Precision,
    artifact_entry,
    artifact_files,
    update_manifest,
    write_manifest,
)

EMBEDDED = ["format", "class_names", "labels", "input", "preprocessing", "outputs", "postprocessing", "model",
            "source_checkpoint"]  # fmt: skip


def test_manifest_describes_the_bundle(assets, eager) -> None:
    model, class_names = eager
    manifest = json.loads((assets.bundle / "manifest.json").read_text())
    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["class_names"] == class_names
    h, w = model.config.input_size
    assert manifest["input"] == {"name": "images", "shape": [1, h, w, 3], "dtype": "uint8", "layout": "NHWC",
                                 "channel_order": "BGR"}  # fmt: skip
    assert "input_size" not in manifest["model"]["config"]  # the size is stored once, in input.shape
    assert load_bundle(assets.bundle).input_size == (h, w)
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
    assert all(0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] for k, r in results.items() if k != "torch/fp32")


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
        export_bundle(*eager, out, ExportSettings(latency_runs=1), log=_interrupt_at("measured:"))
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
        (tmp / "model.onnx").write_text("1")
    assert (target / "model.onnx").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "model.onnx").write_text("2")
        raise RuntimeError("boom")
    assert (target / "model.onnx").read_text() == "1"
    (target / "notes.txt").write_text("mine")  # not a file lighthead-edge writes: carried over
    kept = []
    with atomic_directory(target, log=kept.append) as tmp:
        (tmp / "model_fp32.xml").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["model_fp32.xml", "notes.txt"]
    assert (target / "notes.txt").read_text() == "mine" and kept == [f"kept what the old {target} held besides the "
                                                                     "bundle: notes.txt"]  # fmt: skip
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
    (tmp_path / "manifest.json").write_text('{"format": "lighthead-edge/bundle/9"}')
    check_target(tmp_path)  # a bundle of any version may be replaced
    for foreign in ('{"name": "My PWA"}', '{"format": "other/bundle/1"}', "[1]", "not json", ""):
        (tmp_path / "manifest.json").write_text(foreign)
        with pytest.raises(ExportError, match="not a lighthead-edge bundle's"):
            check_target(tmp_path)


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


def test_file_names_and_entries_come_from_the_schema() -> None:
    ort, ov, fp32, fp16, int8 = Backend.ONNXRUNTIME, Backend.OPENVINO, Precision.FP32, Precision.FP16, Precision.INT8
    kinds = [(ort, fp32), (ort, int8), (ov, fp32), (ov, fp16), (ov, int8)]
    names = {(b.value, p.value): artifact_files(b, p) for b, p in kinds}
    assert names == {("onnxruntime", "fp32"): ["model.onnx"], ("onnxruntime", "int8"): ["model_int8.onnx"],
                     ("openvino", "fp32"): ["model_fp32.xml", "model_fp32.bin"],
                     ("openvino", "fp16"): ["model_fp16.xml", "model_fp16.bin"],
                     ("openvino", "int8"): ["model_int8.xml", "model_int8.bin"]}  # fmt: skip
    entry = artifact_entry(Backend.OPENVINO, Precision.INT8, ps_roi_align_method="gather", quantization={"x": 1})
    assert entry == {"backend": "openvino", "precision": "int8", "format": "openvino-ir", "path": "model_int8.xml",
                     "files": ["model_int8.xml", "model_int8.bin"], "ps_roi_align_method": "gather",
                     "quantization": {"x": 1}}  # fmt: skip


def test_update_manifest_covers_report_files_and_replaces_entries(assets, tmp_path) -> None:
    bundle = Path(shutil.copytree(assets.bundle, tmp_path / "bundle"))
    for name in REPORT_FILES:
        (bundle / name).write_text(f"{name} of a run")
    update_manifest(bundle, files=REPORT_FILES, measurements={"results": {"x/int8": {"latency_ms": 1}}})
    manifest = load_bundle(bundle).manifest  # verifies the report files too
    assert set(REPORT_FILES) <= set(manifest["files"]) and "x/int8" in manifest["measurements"]["results"]
    assert "onnxruntime/fp32" in manifest["measurements"]["results"]  # merged, not replaced

    update_manifest(bundle, entries=[artifact_entry(Backend.ONNXRUNTIME, Precision.FP32, ps_roi_align_method="m")])
    manifest = load_bundle(bundle).manifest
    assert [a["ps_roi_align_method"] for a in manifest["artifacts"] if a["backend"] == "onnxruntime"] == ["m"]
    assert len(manifest["artifacts"]) == 3 and set(REPORT_FILES) <= set(manifest["files"])

    (bundle / "report.md").write_text("report.md of a run, edited")
    with pytest.raises(BundleError, match=r"report\.md is \d+ bytes"):
        load_bundle(bundle)


def test_cli_refuses_a_manifest_size_the_graph_does_not_take(assets, tmp_path, cli) -> None:
    """An input.shape edited with the manifest's digest recomputed (a hand edit is refused by the digest, see
    test_nothing_lost) passes load_bundle and is caught against the graph's input shape: a one-line error."""
    bundle = Path(shutil.copytree(assets.bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    h, w = manifest["input"]["shape"][1:3]
    manifest["input"]["shape"] = [1, h + 32, w, 3]
    write_manifest(bundle, manifest)
    code, _, err = cli("eval", bundle, "--data", assets.val_json, "--backend", "onnxruntime")
    assert code != 0
    assert err.strip().splitlines() == [f"error: bundle {bundle}: model.onnx takes {h}x{w} images but the manifest "
                                        f"says {h + 32}x{w}; re-export the bundle"]  # fmt: skip


def test_a_format_1_bundle_still_loads(assets, tmp_path) -> None:
    """Format 1 stored the input size also as input.size and model.config.input_size; its input.shape reads the same."""
    bundle = Path(shutil.copytree(assets.bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    size = manifest["input"]["shape"][1:3]
    manifest["format"] = "lighthead-edge/bundle/1"
    manifest["input"]["size"], manifest["model"]["config"]["input_size"] = size, size
    del manifest["manifest_sha256"]  # formats 1 and 2 had no digest
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert load_bundle(bundle).input_size == tuple(size)
    manifest["format"] = "lighthead-edge/bundle/2"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert load_bundle(bundle).input_size == tuple(size)
    manifest["format"] = "lighthead-edge/bundle/3"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="lacks manifest_sha256"):  # 3 has it: a missing one is not a bundle of 3
        load_bundle(bundle)
    manifest["format"] = "lighthead-edge/bundle/0"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="this runtime reads 'lighthead-edge/bundle/3'"):
        load_bundle(bundle)


def _pad_missing(m: dict) -> None:
    del m["preprocessing"]["letterbox"]["pad_bgr"]


def _set(path: str, value):
    """An edit that sets the entry at ``path`` (keys and list indices, by "/"; a file name may hold dots)."""

    def edit(m: dict) -> None:
        *parents, last = path.split("/", 1 if path.startswith("files/") else -1)
        for key in parents:
            m = m[int(key)] if isinstance(m, list) else m[key]
        m[int(last) if isinstance(m, list) else last] = value

    return edit


@pytest.mark.parametrize("edit, says", [
    (_pad_missing, "pad_bgr is None"),
    (_set("preprocessing/letterbox/pad_bgr", None), "pad_bgr is None"),
    (_set("preprocessing/letterbox/pad_bgr", [104, 116, 256]), "not 3 integers in 0..255"),
    (_set("input/shape", [1, 128, 128, 3, 1, 1]), "input.shape is [1, 128, 128, 3, 1, 1]"),
    (_set("input/shape", [1, 128.5, 128, 3]), "not [1, H, W, 3]"),
    (_set("input/shape", [1, 0, 128, 3]), "not [1, H, W, 3]"),
    (_set("class_names", []), "class_names is not a list of non-empty names"),
    (_set("class_names", None), "class_names is not a list"),
    (_set("class_names", ["circle", "", "triangle", "star"]), "class_names"),
    (_set("artifacts", []), "artifacts is not a non-empty list"),
    (_set("artifacts/0/backend", "tensorrt"), "backend 'tensorrt'"),
    (_set("artifacts/0/files", "model.onnx"), "not a list of checksummed files"),
    (_set("artifacts/2/path", "sub/../../model_fp16.xml"), "not one of its checksummed files"),
    (_set("artifacts/0/path", "/model.onnx"), "not one of its checksummed files"),
    (_set("files//etc/passwd", {"sha256": "0" * 64, "bytes": 1}), "file names inside the bundle"),
    (_set("files/model.onnx", {"sha256": "0" * 64}), "file names inside the bundle"),
])  # fmt: skip
def test_a_manifest_of_the_wrong_shape_is_refused_on_read(assets, tmp_path, edit, says) -> None:
    """Each edit with the digest recomputed (a tool that rewrote the manifest): read_manifest checks the types and
    shapes of what the runtime reads, so eval/bench/run fail in one BundleError, not a KeyError or TypeError later."""
    bundle = Path(shutil.copytree(assets.bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match="it was not written by lighthead-edge export") as info:
        load_bundle(bundle, verify=False)
    assert says in str(info.value)
