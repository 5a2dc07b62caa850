"""``export --rois N`` / ``quantize --rois N``: the graph's static number of post-NMS RoI slots.

The tiny checkpoint (pre-NMS top-n 300, 960 anchors, 100 RoIs by default) is exported with 10 and 40 RoI slots:
the R-CNN head's fc then runs on [N, ...] rows (an intermediate of the ONNX graph, run in onnxruntime), the manifest
records N in the model config and under ``postprocessing.rois``, and the detections equal those of the eager model
with ``rpn_post_nms_top_n_test = N`` (IoU >= 0.99, scores within 1e-3, as tests/export/test_parity.py holds them).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from exported import ExportedAssets

from lighthead_edge.compress.quantize import QuantizeSettings
from lighthead_edge.data.cocojson import image_paths
from lighthead_edge.data.transforms import read_image
from lighthead_edge.errors import ConfigError
from lighthead_edge.export import parity
from lighthead_edge.export.bundle import ExportSettings, export_bundle
from lighthead_edge.modeling.checkpoint import load_checkpoint
from lighthead_edge.runtime import Detector
from lighthead_edge.runtime.bundle import Backend

FC_NODE = "/roi_heads/head/fc/Gemm"  # the fc-2048 (fc_dim 256 in the tiny model): one row per RoI slot


def _eager_with_rois(checkpoint: Path, rois: int):
    """The checkpoint's eager model with ``rois`` post-NMS proposals, set here by hand (not by the code tested)."""
    model, _, _ = load_checkpoint(checkpoint)
    model.rpn.test_settings = dataclasses.replace(model.rpn.test_settings, post_nms_top_n=rois)
    return model


def _fc_rows(model_path: Path) -> int:
    """The first dimension of the fc's input when the graph runs: how many RoI rows the head computes."""
    model = onnx.load(str(model_path))
    fc = next(n for n in model.graph.node if n.name == FC_NODE)
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(fc.input[0]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return session.run([fc.input[0]], {session.get_inputs()[0].name: image})[0].shape[0]


def _check_bundle(bundle: Path, rois: int, slots: int, assets: ExportedAssets) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["config"]["rpn_post_nms_top_n_test"] == rois
    assert manifest["postprocessing"]["rois"] == slots
    assert manifest["postprocessing"]["rpn"]["post_nms_top_n"] == rois
    assert _fc_rows(bundle / "model.onnx") == slots


def _check_parity(bundle: Path, rois: int, assets: ExportedAssets) -> None:
    model = _eager_with_rois(assets.checkpoint, rois)
    expected = parity.eager_detections(model, assets.val_json)
    result = parity.compare(Detector(bundle, "onnxruntime", threads=2), expected, assets.val_json)
    assert result.matched >= 16, f"too few detections ({result.matched}) for a meaningful comparison"
    assert result.min_iou >= 0.99 and result.max_score_diff <= 1e-3, result
    assert all(s < model.config.score_thresh + 1e-3 for s in result.unmatched_scores), result.unmatched_scores


def test_export_rois_10_from_the_cli(cli, assets: ExportedAssets, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    code, _, err = cli("export", assets.checkpoint, "--rois", "10", "--format", "onnx", "--runs", "1", "--out", out)
    assert code == 0, err
    assert "--rois 10: the graph has 10 RoI slots" in err
    _check_bundle(out, 10, 10, assets)
    _check_parity(out, 10, assets)
    # the setting matters: the checkpoint's own 100 RoIs (the shared bundle) give other detections on these images
    ten, default = (Detector(b, "onnxruntime", threads=2) for b in (out, assets.bundle))
    frames = [read_image(p) for p in image_paths(assets.val_json)]
    assert any(len(ten(f)) != len(default(f)) or not np.allclose(ten(f).scores, default(f).scores) for f in frames)


def test_export_rois_40_leaves_the_callers_model_alone(assets: ExportedAssets, tmp_path: Path) -> None:
    model, classes, _ = load_checkpoint(assets.checkpoint)
    settings = ExportSettings(formats=("onnx",), latency_runs=1, rois=40)
    bundle = export_bundle(model, classes, tmp_path / "bundle", settings, source=assets.checkpoint, log=lambda m: None)
    assert model.config.rpn_post_nms_top_n_test == 100 and model.rpn.test_settings.post_nms_top_n == 100
    _check_bundle(bundle, 40, 40, assets)
    _check_parity(bundle, 40, assets)


def test_rois_beyond_the_candidates_are_clipped_and_logged(assets: ExportedAssets, tmp_path: Path) -> None:
    model, classes, _ = load_checkpoint(assets.checkpoint)
    lines: list[str] = []
    settings = ExportSettings(formats=("onnx",), latency_runs=1, rois=5000)
    bundle = export_bundle(model, classes, tmp_path / "bundle", settings, log=lines.append)
    said = [line for line in lines if line.startswith("--rois 5000")]
    assert said == ["--rois 5000 is more than the RPN's 300 pre-NMS candidates (rpn_pre_nms_top_n_test 300, 960 "
                    "anchors): the graph has 300 RoI slots"], lines  # fmt: skip
    _check_bundle(bundle, 5000, 300, assets)


@pytest.mark.parametrize("value", ["0", "-3", "ten", "100001"])
@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_bad_rois_is_a_usage_error(cli, assets: ExportedAssets, tmp_path: Path, command: str, value: str) -> None:
    out = tmp_path / "bundle"
    extra = ["--calib", str(assets.val_json)] if command == "quantize" else []
    code, stdout, err = cli(command, assets.checkpoint, *extra, "--rois", value, "--out", out)
    assert code == 2
    assert err.count("\n") == 1 and "--rois" in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_settings_refuse_a_bad_rois() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="rois"):
            ExportSettings(rois=bad)
        with pytest.raises(ConfigError, match="rois"):
            QuantizeSettings(rois=bad)


def test_quantize_frame_in_exports_both_graphs_with_the_same_rois(monkeypatch, assets: ExportedAssets,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """``quantize --frame-size --rois``: the frame-in bundle and the host bundle (whose INT8 graphs it wraps) are
    exported with the same RoI count (the export itself is stubbed: only its settings are looked at)."""
    from lighthead_edge.compress.quantize import quantize_checkpoint
    from lighthead_edge.export import bundle as export_module

    seen: list[ExportSettings] = []

    class Stop(Exception):
        pass

    def spy(model, class_names, out, settings=None, **kwargs):
        seen.append(settings)
        if len(seen) == 2:
            raise Stop

    monkeypatch.setattr(export_module, "export_bundle", spy)
    settings = QuantizeSettings(backends=(Backend.ONNXRUNTIME,), frame_size=(150, 200), rois=24)
    with pytest.raises(Stop):
        quantize_checkpoint(assets.checkpoint, tmp_path / "bundle", calib=assets.val_json, settings=settings,
                            log=lambda m: None)  # fmt: skip
    assert [(s.frame_size, s.rois) for s in seen] == [((150, 200), 24), (None, 24)]
    assert not (tmp_path / "bundle").exists()
