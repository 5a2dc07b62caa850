"""scripts/bench_heads.py and lighthead_edge/modeling/reference_heads.py at tiny sizes: the three heads export, run
on both engines with the right output shapes and the torch modules' outputs, the light head is the detector's own,
and a whole (tiny) benchmark run writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_scripts import load_script

from lighthead_edge.config import ModelConfig
from lighthead_edge.modeling.detector import build_detector
from lighthead_edge.modeling.reference_heads import HeadKind, build_head

CLASSES, ROIS = 3, 5


@pytest.fixture(scope="module")
def bench():
    """scripts/bench_heads.py as a module."""
    return load_script("bench_heads")


@pytest.fixture(scope="module")
def tiny(bench):
    """A grid of tiny sizes: 16 backbone channels, a 128x128 image (an 8x8 map), 3 classes, 5 RoIs."""
    return bench.Grid(classes=(CLASSES,), rois=(ROIS,), runs=2, warmup=1, rounds=1, calib=2, in_channels=16,
                      image_size=128)  # fmt: skip


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("kind", list(HeadKind))
def test_exported_heads_run_with_torchs_outputs(bench, tiny, tmp_path: Path, kind: HeadKind, engine: str) -> None:
    torch.manual_seed(0)
    head = build_head(kind, in_channels=tiny.in_channels, num_classes=CLASSES)
    feeds = bench.random_inputs(tiny, ROIS, np.random.default_rng(1))
    expected = bench.export_head(bench.export_form(head, engine), feeds, tmp_path / "head.onnx")
    outputs = bench.RUNNERS[engine](tmp_path / "head.onnx", feeds, 1)()
    assert [o.shape for o in outputs] == [(ROIS, CLASSES + 1), (ROIS, 4)]
    for out, ref in zip(outputs, expected, strict=True):
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert any(np.abs(ref).max() > 1e-3 for ref in expected), "outputs too small for the comparison to mean much"


def test_the_light_head_is_the_detectors_head_and_its_export_form_exact(bench, tiny) -> None:
    """The bench's light head has exactly the detector's head modules (its weights load into a detector built by
    build_detector), and the export form (exportable PS-RoIAlign, bin-major thin map) computes the same."""
    torch.manual_seed(0)
    head = build_head(HeadKind.LIGHT, in_channels=64, num_classes=CLASSES)  # the "tiny" backbone's 64 channels
    detector = build_detector(ModelConfig(num_classes=CLASSES, backbone="tiny")).eval()
    detector.thin_head.load_state_dict(head.thin_head.state_dict())
    detector.roi_heads.load_state_dict(head.roi_heads.state_dict())
    feeds = bench.random_inputs(bench.Grid(in_channels=64, image_size=128), ROIS, np.random.default_rng(2))
    features, rois = (torch.from_numpy(feeds[name]) for name in ("features", "rois"))
    with torch.no_grad():
        reference = detector.roi_heads(detector.thin_head(features), rois)
        for engine in ("onnxruntime", "openvino"):
            exported = bench.export_form(head, engine)
            assert exported.roi_heads.pooler.bin_major
            for a, b in zip(exported(features, rois), reference, strict=True):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_rfcn_export_form_is_exact(bench, tiny) -> None:
    torch.manual_seed(0)
    head = build_head(HeadKind.RFCN, in_channels=tiny.in_channels, num_classes=CLASSES)
    feeds = bench.random_inputs(tiny, ROIS, np.random.default_rng(3))
    features, rois = (torch.from_numpy(feeds[name]) for name in ("features", "rois"))
    exported = bench.export_form(head, "onnxruntime")
    assert exported.pooler.bin_major
    with torch.no_grad():
        for a, b in zip(exported(features, rois), head(features, rois), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_a_tiny_run_writes_the_report(bench, tiny, tmp_path: Path) -> None:
    """Both engines, FP32 and INT8: the table, the json (every variant timed, checked, its ratio) and the plot."""
    report = bench.run(tiny, tmp_path / "heads", lambda message: None, "bench_heads.py --test")
    record = json.loads((tmp_path / "heads" / "heads.json").read_text())
    rows = record["rows"]
    assert {(r["head"], r["engine"], r["precision"]) for r in rows} == {
        (h.value, e, p) for h in HeadKind for e in ("onnxruntime", "openvino") for p in ("fp32", "int8")
    }
    assert all(r["latency_ms"]["runs"] == 2 and r["latency_ms"]["p50"] > 0 for r in rows)
    assert all(r["ratio_to_light"] == 1.0 for r in rows if r["head"] == "light")
    assert all(r["check"]["max_abs_err"] <= 1e-4 for r in rows if r["precision"] == "fp32")
    assert all(r["check"]["cosine"] >= 0.99 for r in rows if r["precision"] == "int8"), rows
    assert "avx2" in record["host"] or "avx512" in record["host"], record["host"]
    text = report.read_text()
    assert "## onnxruntime INT8" in text and "## openvino FP32" in text and f"| {CLASSES} | {ROIS} |" in text
    assert (tmp_path / "heads" / "heads.png").stat().st_size > 10_000


def test_bad_arguments_are_usage_errors(bench, capsys) -> None:
    for argv in (["--rois", "0"], ["--classes", "two"], ["--engines", "tensorrt"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(argv)
        assert exit_info.value.code == 2
        assert "error:" in capsys.readouterr().err
