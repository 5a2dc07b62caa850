"""The torch-free runtime: Detector API, batch / async forms, and refusing broken bundles."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lighthead_edge.data.transforms import letterbox, read_image
from lighthead_edge.runtime import Bundle, BundleError, Detections, Detector, load_bundle

BACKENDS = ["onnxruntime", "openvino"]

TORCH_FREE_SCRIPT = """
import json, sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
from lighthead_edge.data.transforms import read_image
from lighthead_edge.runtime import Detector
bundle, image = sys.argv[1], sys.argv[2]
out = {}
for backend in ("onnxruntime", "openvino"):
    dets = Detector(bundle, backend, threads=1)(read_image(image))
    out[backend] = {"boxes": dets.boxes.tolist(), "scores": dets.scores.tolist(), "names": dets.names}
loaded = sorted(m for m in sys.modules if m.startswith(("lighthead_edge.", "torch")) and sys.modules[m] is not None)
print(json.dumps({"detections": out, "modules": loaded}))
"""


def _frames(assets, count: int) -> list[np.ndarray]:
    images = json.loads(assets.val_json.read_text())["images"][:count]
    return [read_image(assets.val_json.parent / im["file_name"]) for im in images]


@pytest.fixture(scope="module")
def detectors(assets) -> dict[str, Detector]:
    return {backend: Detector(assets.bundle, backend, threads=2) for backend in BACKENDS}


def test_runtime_runs_without_torch(assets, detectors) -> None:
    image = assets.val_json.parent / json.loads(assets.val_json.read_text())["images"][0]["file_name"]
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE_SCRIPT, str(assets.bundle), str(image)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert not any(m == "torch" or m.startswith("torch.") for m in report["modules"])
    assert not any(m.startswith(("lighthead_edge.modeling", "lighthead_edge.ops", "lighthead_edge.export"))
                   for m in report["modules"])  # fmt: skip
    frame = read_image(image)
    for backend, got in report["detections"].items():
        expected = detectors[backend](frame)
        assert len(expected) > 0
        np.testing.assert_allclose(np.array(got["boxes"]).reshape(-1, 4), expected.boxes, atol=1e-3)
        np.testing.assert_allclose(got["scores"], expected.scores, atol=1e-5)
        assert got["names"] == expected.names


@pytest.mark.parametrize("backend", BACKENDS)
def test_detections_are_in_original_image_pixels(assets, detectors, backend) -> None:
    detector = detectors[backend]
    frame = _frames(assets, 1)[0]
    big = np.ascontiguousarray(np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1))  # 240 x 320, scaled down
    dets = detector(big)
    assert isinstance(dets, Detections) and len(dets) > 0
    assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
    assert dets.labels.dtype == np.int64 and dets.scores.dtype == np.float32
    assert np.all(np.diff(dets.scores) <= 0)
    assert dets.names == [detector.class_names[label - 1] for label in dets.labels]
    # by hand: letterbox, the raw graph, then divide by the scale
    image, scale = letterbox(big, detector.input_size)
    raw = detector.infer(image[None])
    n = int(raw["num_detections"][0])
    np.testing.assert_allclose(dets.boxes, np.clip(raw["boxes"][0, :n] / scale, 0, [320, 240, 320, 240]), atol=1e-4)
    assert dets.boxes[:, 2].max() <= 320 and dets.boxes[:, 3].max() <= 240


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_and_async_forms_equal_single_frames(assets, backend) -> None:
    detector = Detector(assets.bundle, backend, threads=1, hint="throughput", jobs=2)
    frames = _frames(assets, 5)
    single = [detector(frame) for frame in frames]
    for batch in (detector.infer_batch(frames), list(detector.stream(iter(frames)))):
        assert len(batch) == len(single)
        for a, b in zip(batch, single, strict=True):
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_blank_frame_gives_no_detections(detectors, backend) -> None:
    dets = detectors[backend](np.full((90, 70, 3), 120, np.uint8))
    assert dets.boxes.shape == (len(dets), 4)
    assert len(dets) == 0 or dets.scores.min() > 0


def test_artifact_selection(assets) -> None:
    bundle = load_bundle(assets.bundle)
    assert bundle.artifact("openvino").precision.value == "fp32"
    assert bundle.artifact("openvino", "fp16").path == "model_fp16.xml"
    with pytest.raises(BundleError, match="no onnxruntime/fp16 artifact"):
        bundle.artifact("onnxruntime", "fp16")
    with pytest.raises(BundleError, match="unknown backend"):
        bundle.artifact("tensorrt")


def _copy(assets, tmp_path: Path) -> Path:
    return Path(shutil.copytree(assets.bundle, tmp_path / "bundle"))


def test_a_modified_file_is_refused(assets, tmp_path) -> None:
    bundle = _copy(assets, tmp_path)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx was modified after export"):
        Detector(bundle, "onnxruntime")


def test_a_truncated_file_is_refused(assets, tmp_path) -> None:
    bundle = _copy(assets, tmp_path)
    with open(bundle / "model_fp32.bin", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(BundleError, match=r"model_fp32\.bin is 1000 bytes.*truncated"):
        load_bundle(bundle)


def test_a_missing_file_or_manifest_is_refused(assets, tmp_path) -> None:
    bundle = _copy(assets, tmp_path)
    (bundle / "model_fp16.xml").unlink()
    with pytest.raises(BundleError, match=r"incomplete: model_fp16\.xml is missing"):
        load_bundle(bundle)
    (bundle / "manifest.json").write_text('{"format": "lighthead-edge/bundle/1", "class_na')
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_cli_eval_refuses_a_tampered_bundle_in_one_line(assets, tmp_path) -> None:
    bundle = _copy(assets, tmp_path)
    with open(bundle / "model_fp32.xml", "a") as f:
        f.write("<!-- edited -->")
    cli = Path(sys.executable).parent / "lighthead-edge"
    proc = subprocess.run([str(cli), "eval", str(bundle), "--data", str(assets.val_json)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 5
    assert proc.stderr.strip().splitlines() == [f"error: bundle {bundle}: model_fp32.xml is "
                                                f"{(bundle / 'model_fp32.xml').stat().st_size} bytes, "
                                                f"{(assets.bundle / 'model_fp32.xml').stat().st_size} expected "
                                                "(truncated or replaced); re-export or re-copy it"]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_size_the_graph_does_not_take_is_refused_in_one_line(assets, backend) -> None:
    bundle = load_bundle(assets.bundle)
    assert Detector(bundle, backend).engine.input_shape == (1, *bundle.input_size, 3)
    manifest = copy.deepcopy(bundle.manifest)
    manifest["input"]["shape"] = [1, 96, 112, 3]
    wrong = Bundle(bundle.root, manifest)
    h, w = bundle.input_size
    with pytest.raises(BundleError) as info:
        Detector(wrong, backend)
    path = wrong.artifact(backend).path
    assert str(info.value) == (f"bundle {bundle.root}: {path} takes {h}x{w} images but the manifest says 96x112; "
                               "re-export the bundle")  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_submit_calls_back_on_an_engine_thread_with_copies_or_the_error(assets, backend) -> None:
    detector = Detector(assets.bundle, backend, threads=1, jobs=2)
    engine = detector.engine
    inputs = [detector.preprocess(frame).input for frame in _frames(assets, 4)]
    got: dict[int, object] = {}
    threads: set[str] = set()

    def callback(i: int):  # holds the results, never the engine
        def done(result) -> None:
            got[i] = result
            threads.add(threading.current_thread().name)

        return done

    for i, image in enumerate(inputs):
        engine.submit(image, callback(i))
    engine.wait_all()
    assert sorted(got) == [0, 1, 2, 3] and threading.current_thread().name not in threads
    for i, image in enumerate(inputs):  # 4 inputs on 2 requests: outputs of the first two were copied out
        for name, value in engine.run(image).items():
            np.testing.assert_allclose(got[i][name], value, atol=1e-5)
    errors: list[object] = []
    bad = np.zeros((1, 7, 5, 3), np.uint8)
    if backend == "onnxruntime":  # refused while running: the callback gets the exception
        engine.submit(bad, errors.append)
        engine.wait_all()
        assert len(errors) == 1 and isinstance(errors[0], Exception)
    else:  # OpenVINO refuses the shape when the request is started, in submit itself
        with pytest.raises(RuntimeError, match="shape"):
            engine.submit(bad, errors.append)
    assert engine.kernel_isas() if backend == "openvino" else engine.kernel_isas() == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_names_are_checked_against_the_artifact(assets, backend) -> None:
    """The manifest's class names must be the ones embedded in the artifact (ONNX metadata_props, IR rt_info): a
    relabelled manifest whose digest was recomputed, or a format-2 one without a digest, is refused on load."""
    bundle = load_bundle(assets.bundle)
    detector = Detector(bundle, backend)
    assert detector.engine.metadata()["class_names"] == bundle.class_names
    manifest = copy.deepcopy(bundle.manifest)
    manifest["class_names"] = bundle.class_names[::-1]
    with pytest.raises(BundleError) as info:
        Detector(Bundle(bundle.root, manifest), backend)
    path = bundle.artifact(backend).path
    assert str(info.value) == (f"bundle {bundle.root}: the manifest's class_names {bundle.class_names[::-1]} differs "
                               f"from the one inside {path} ({bundle.class_names}); the manifest was edited: "
                               "re-export the bundle")  # fmt: skip
