"""INT8 PTQ on the committed tiny checkpoint: both backends, the float scope, the manifest, the report and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from exported import ExportedAssets

from lighthead_edge.compress.quantize import QuantizeRun, QuantizeSettings, quantize_checkpoint
from lighthead_edge.errors import ConfigError
from lighthead_edge.measure import BenchSettings
from lighthead_edge.runtime.bundle import load_bundle

CHECKPOINT = Path(__file__).parents[1] / "export" / "data" / "tiny_synth_128.pt"
MAX_AP_DROP = 0.02  # absolute AP; the tiny model's FP32 AP is only ~0.02, so this bounds "no collapse" mostly
BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def run(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> QuantizeRun:
    # plain INT8 (every quantizable layer): latency-aware INT8, whose choices on this tiny model follow the CPU's
    # noise, has its own tests (test_latency_aware.py)
    settings = QuantizeSettings(val_json=str(assets.val_json), calib_size=16, latency_aware=False,
                                bench=BenchSettings(runs=2, warmup=1, throughput_frames=4))  # fmt: skip
    out = tmp_path_factory.mktemp("quantize") / "bundle"
    return quantize_checkpoint(CHECKPOINT, out, calib=assets.val_json.parent / "images", settings=settings,
                               log=lambda message: None)  # fmt: skip


def test_int8_artifacts_are_in_the_manifest_and_verify(run: QuantizeRun) -> None:
    bundle = load_bundle(run.bundle)  # verifies every checksum, the INT8 files included
    keys = {a.key for a in bundle.artifacts}
    assert {"onnxruntime/fp32", "openvino/fp32", "onnxruntime/int8", "openvino/int8"} <= keys
    for name in ("model_int8.onnx", "model_int8.xml", "model_int8.bin"):
        assert name in bundle.manifest["files"]
    assert bundle.artifact("openvino", "int8").info["ps_roi_align_method"] == "grid_sample"
    assert set(bundle.manifest["measurements"]["results"]) == keys


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area - inter)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_detections_are_close_to_fp32(run: QuantizeRun, assets: ExportedAssets, backend: str) -> None:
    from lighthead_edge.data.cocojson import image_paths
    from lighthead_edge.data.transforms import read_image
    from lighthead_edge.runtime.detector import Detector

    fp32, int8 = run.results[f"{backend}/fp32"], run.results[f"{backend}/int8"]
    assert fp32["coco"]["AP"] - int8["coco"]["AP"] <= MAX_AP_DROP
    assert int8["ratios"]["size"] < 0.5  # int8 weights, float scope aside
    ref, quant = Detector(run.bundle, backend, precision="fp32"), Detector(run.bundle, backend, precision="int8")
    ious = []
    for path in image_paths(assets.val_json)[:6]:
        frame = read_image(path)
        a, b = ref(frame), quant(frame)
        assert abs(float(a.scores[0]) - float(b.scores[0])) < 0.02
        for box, label in zip(a.boxes[:5], a.labels[:5]):  # the top-5 FP32 detections must be found again
            same = b.boxes[b.labels == label]
            ious.append(float(_iou(box, same).max()) if len(same) else 0.0)
    assert min(ious) >= 0.5 and np.mean(np.array(ious) >= 0.7) >= 0.8


def test_onnx_float_scope_gets_no_quantized_input(run: QuantizeRun) -> None:
    from lighthead_edge.export.graph import float_node_names

    model = onnx.load(str(run.bundle / "model_int8.onnx"))
    floating = set(float_node_names(model))
    assert floating, "the INT8 graph lost its float-scope node names"
    q_outputs = {o for n in model.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    assert not [n.name for n in model.graph.node if n.name in floating and set(n.input) & q_outputs]
    assert not [n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and n.name in floating]  # fmt: skip
    # the RoI coordinates are computed from float proposals only: no DequantizeLinear anywhere upstream in scope
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    coords = [n for n in model.graph.node if "/coords/" in n.name or n.name.startswith("/rpn_proposals/")]
    assert coords and not [n.name for n in coords if n.op_type != "Identity" and set(n.input) & dq_outputs
                           and "/rpn_proposals/" not in n.name]  # fmt: skip
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}


def test_openvino_ignored_ops_have_no_fake_quantize(run: QuantizeRun) -> None:
    import openvino as ov

    from lighthead_edge.compress.quantize_ov import fake_quantized_ops, quantizable_ops
    from lighthead_edge.export.openvino import float_op_names

    ignored = set(float_op_names(run.bundle / "model_fp32.xml"))
    int8 = ov.Core().read_model(str(run.bundle / "model_int8.xml"))
    quantized = set(fake_quantized_ops(int8))
    assert not ignored & quantized
    convs = set(quantizable_ops(ov.Core().read_model(str(run.bundle / "model_fp32.xml"))))
    assert len(convs & quantized) >= 0.9 * len(convs)  # the backbone, thin map and fc did go INT8
    # and the CPU plugin really runs every conv and fc in 8 bits (the first conv too: a Concat of float constants
    # before it, as onnxruntime's folded stem has, left it in f32)
    compiled = ov.Core().compile_model(int8, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    layers = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    ran = {str(rt["layerType"].astype(str)): [] for rt in layers}
    for rt in layers:
        ran[rt["layerType"].astype(str)].append(rt["runtimePrecision"].astype(str))
    assert ran["Convolution"] and set(ran["Convolution"]) <= {"u8", "i8"}, ran["Convolution"]
    assert ran["FullyConnected"] and set(ran["FullyConnected"]) <= {"u8", "i8"}, ran["FullyConnected"]


def test_report_files(run: QuantizeRun) -> None:
    assert run.report == run.bundle / "report.md"
    report = json.loads((run.bundle / "report.json").read_text())
    row = report["results"]["openvino/int8"]
    assert row["baseline"] == "openvino/fp32" and {"latency_p50", "size", "ap_drop_points"} <= set(row["ratios"])
    assert {"p50", "p95"} <= set(row["latency_ms"]["2"]) and row["throughput_fps"] > 0
    assert (run.bundle / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "| onnxruntime/int8 |" in run.report.read_text()
    assert report["quantization"]["onnxruntime/int8"]["profile_ms"]
    assert {"report.md", "report.json", "report.png"} <= set(load_bundle(run.bundle).manifest["files"])  # verified


def test_report_lists_latency_at_every_thread_count() -> None:
    """The headline table is at one thread count; a second table gives every measured count with its own ratio."""
    from lighthead_edge.compress.report import markdown, with_ratios

    def lat(p50_1, p50_2):
        return {"latency_ms": {"1": {"p50": p50_1, "p95": p50_1}, "2": {"p50": p50_2, "p95": p50_2}}}

    results = {"openvino/fp32": lat(20.0, 12.0), "openvino/int8": lat(8.0, 6.0)}
    results = with_ratios(results, "openvino/fp32", "2")
    text = markdown({"model": "m.pt", "threads": "2", "results": results})
    assert "| openvino/int8 | - | - | 6.0 | 6.0 | - | - | 0.50 | - |" in text  # headline: 2 threads
    per_count = text.split("## Latency p50 at each thread count")[1]
    assert "| variant | 1 thr ms | x | 2 thr ms | x |" in per_count
    assert "| openvino/int8 | 8.0 | 0.40 | 6.0 | 0.50 |" in per_count
    one = markdown({"model": "m.pt", "threads": "2", "results": {"openvino/fp32": {"latency_ms": {"2": {"p50": 1}}}}})
    assert "each thread count" not in one


def test_report_plot_labels_every_point_without_overlap(tmp_path: Path) -> None:
    """Ten variants, pairs of them on nearly the same spot: every point is labelled, no two labels overlap each other
    or a marker, all stay inside the axes, and the y axis is the AP drop in points against the variant's FP32."""
    from lighthead_edge.compress.report import add_ratios, figure, write_report

    def row(p50: float, ap: float) -> dict:
        return {"latency_ms": {"2": {"p50": p50, "p95": p50}}, "coco": {"AP": ap, "AP50": ap}}

    results = {"torch/fp32": row(120, 0.40), "onnxruntime/fp32": row(95, 0.40), "openvino/fp32": row(96, 0.40),
               "openvino/fp16": row(97, 0.40), "onnxruntime/int8": row(50, 0.39), "openvino/int8": row(51, 0.392),
               "onnxruntime/pruned-fp32": row(35, 0.37), "openvino/pruned-fp32": row(36, 0.37),
               "onnxruntime/pruned-int8": row(22, 0.365), "openvino/pruned-int8": row(23, 0.366)}  # fmt: skip
    report = {"model": "m.pt", "threads": "2", "val_data": "val.json", "results": add_ratios(results, "2")}
    fig = figure(report)
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted(results)
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes))
                for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]  # fmt: skip
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    for x, y in ax.transData.transform(points):  # no label covers a marker's centre
        assert not any(b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1 for b in boxes)
    by_label = {t.get_text(): t.xy for t in labels}
    assert by_label["openvino/int8"] == pytest.approx((51, 0.8))  # AP drop in points against openvino/fp32
    assert by_label["onnxruntime/pruned-int8"] == pytest.approx((22, 3.5))
    assert "AP drop, points" in ax.get_ylabel()
    write_report(tmp_path, report)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_float_variant_reads_fp32_inputs_without_requantizing(assets: ExportedAssets, run: QuantizeRun) -> None:
    """Accuracy control's ranking probe: a layer of the INT8 graph made to read FP32 inputs, with no re-calibration."""
    import onnxruntime as ort

    from lighthead_edge.compress.calibration import calibration_set_for_bundle
    from lighthead_edge.compress.quantize_ort import float_variant, fold_initializer_identities, quantized_nodes

    fp32 = fold_initializer_identities(onnx.load(str(run.bundle / "model.onnx")))
    int8 = onnx.load(str(run.bundle / "model_int8.onnx"))
    names = quantized_nodes(fp32, int8)
    assert len(names) >= 10 and all(
        n.startswith(("/backbone/", "/rpn_head/", "/thin_head/", "/roi_heads/")) for n in names
    ), names

    # one layer: it reads the float activation and the FP32 weight; every other node is untouched
    one = float_variant(fp32, int8, [names[3]])
    node = next(n for n in one.graph.node if n.name == names[3])
    ref = next(n for n in fp32.graph.node if n.name == names[3])
    inits = {t.name: t for t in one.graph.initializer}
    made = {o: n for n in one.graph.node for o in n.output}
    was = {o: n for n in fp32.graph.node for o in n.output}
    assert made[node.input[0]].op_type == was[ref.input[0]].op_type != "DequantizeLinear"  # the Clip ORT had folded
    assert all(inits[i].data_type == onnx.TensorProto.FLOAT for i in node.input[1:])
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    for mine, theirs in zip(node.input[1:], ref.input[1:], strict=True):
        np.testing.assert_array_equal(
            onnx.numpy_helper.to_array(inits[mine]), onnx.numpy_helper.to_array(fp32_inits[theirs])
        )
    before = {n.name: list(n.input) for n in int8.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    after = {n.name: list(n.input) for n in one.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    assert {k for k in after if before.get(k) != after[k]} == {
        names[3],
        made[node.input[0]].name,
    }  # + the Clip put back
    assert len(one.graph.node) < len(int8.graph.node)  # its now unread Q/DQ pairs are gone

    # every node that reads a dequantized tensor, in float: the FP32 model's outputs come back
    dq = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    every = [n.name for n in int8.graph.node if any(i in dq for i in n.input)]
    whole = float_variant(fp32, int8, every)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in whole.graph.node)
    x = calibration_set_for_bundle(assets.val_json, run.bundle, size=1).inputs[0]

    def outputs(model) -> list[np.ndarray]:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})

    for got, want in zip(outputs(whole), outputs(fp32), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no node named"):
        float_variant(fp32, int8, ["nope"])


def test_averaged_activation_ranges_are_never_wider_than_minmax(assets: ExportedAssets, run: QuantizeRun,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """``--ort-ranges averaged`` averages each image's min/max: inside the extremes, and narrower somewhere."""
    from onnx import numpy_helper

    from lighthead_edge.compress.calibration import calibration_set_for_bundle
    from lighthead_edge.compress.quantize_ort import OrtQuantSettings, quantize_onnx

    calib = calibration_set_for_bundle(assets.val_json, run.bundle, size=6).inputs
    scales = {}
    for averaged in (True, False):
        out = tmp_path / f"{averaged}.onnx"
        quantize_onnx(run.bundle / "model.onnx", out, calib, OrtQuantSettings(moving_average=averaged))
        model = onnx.load(str(out))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        scales[averaged] = {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
                            if n.op_type == "QuantizeLinear" and inits[n.input[1]].size == 1}  # fmt: skip
    assert scales[True].keys() == scales[False].keys() and len(scales[True]) >= 10
    assert all(scales[True][k] <= scales[False][k] * (1 + 1e-6) for k in scales[True])
    assert sum(scales[True][k] < 0.99 * scales[False][k] for k in scales[True]) >= 3


def test_auto_ranges_keep_the_setting_with_the_higher_val_ap(run: QuantizeRun) -> None:
    """``--ort-ranges auto`` with ``--val``: both settings quantized and scored, the better one is the artifact."""
    ranges = run.quantization["onnxruntime/int8"]["ranges"]
    tried = ranges["val_ap"]
    assert ranges["setting"] == "auto" and set(tried) == {"minmax", "averaged"}
    best = "averaged" if tried["averaged"] > tried["minmax"] else "minmax"
    assert ranges["used"] == best
    scheme = load_bundle(run.bundle).artifact("onnxruntime", "int8").info["quantization"]["scheme"]
    assert scheme.endswith("MinMax, averaged per image") == (best == "averaged")
    # the artifact in the bundle is the one that was scored: the report measures the same AP through the runtime
    assert run.results["onnxruntime/int8"]["coco"]["AP"] == pytest.approx(tried[best], abs=1e-3)
    assert f"activation ranges: {best} (auto: the higher val AP; val AP minmax" in run.report.read_text()
    assert not list(run.bundle.glob("model_int8.*.onnx"))  # the loser is gone


def test_keep_float_keeps_the_fc_in_float_on_both_backends(assets: ExportedAssets, tmp_path: Path) -> None:
    """``--keep-float roi_heads/head/fc/``: ONNX Runtime reads no int8 weight there, OpenVINO runs an f32 kernel."""
    import openvino as ov

    from lighthead_edge.runtime.bundle import Backend

    settings = QuantizeSettings(keep_float=("roi_heads/head/fc/",), calib_size=4, latency_aware=False,
                                bench=BenchSettings(runs=1, warmup=1, throughput_frames=2))  # fmt: skip
    run = quantize_checkpoint(CHECKPOINT, tmp_path / "b", calib=assets.val_json, settings=settings, log=lambda m: None)
    for backend in (Backend.ONNXRUNTIME, Backend.OPENVINO):
        kept = run.quantization[f"{backend.value}/int8"]["kept_float"]
        assert [k["why"] for k in kept] == ["--keep-float"] and "/roi_heads/head/fc/" in kept[0]["name"]
    model = onnx.load(str(run.bundle / "model_int8.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    fc = [n for n in model.graph.node if n.name.startswith("/roi_heads/head/fc/")]
    assert fc and all(producers.get(n.input[1]) is None or producers[n.input[1]].op_type != "DequantizeLinear"
                      for n in fc)  # fmt: skip
    other = [n for n in model.graph.node if n.name.startswith("/roi_heads/head/cls_score/")]
    assert other and producers[other[0].input[1]].op_type == "DequantizeLinear"  # the rest is still INT8

    def fc_kernel(xml: Path) -> str:
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "/roi_heads/head/fc/" in info["originalLayersNames"].astype(str) and info["layerType"].astype(
                str
            ).startswith("FullyConnected"):
                return info["primitiveType"].astype(str)
        raise AssertionError("no fc kernel found")

    assert fc_kernel(run.bundle / "model_int8.xml").endswith("_f32")
    assert fc_kernel(run.bundle / "model_int8.xml") == fc_kernel(run.bundle / "model_fp32.xml")


def test_keep_float_that_names_nothing_is_an_error(run: QuantizeRun) -> None:
    from lighthead_edge.compress.quantize import keep_float_names
    from lighthead_edge.errors import ConfigError
    from lighthead_edge.runtime.bundle import Backend

    for backend, path in ((Backend.ONNXRUNTIME, "model.onnx"), (Backend.OPENVINO, "model_fp32.xml")):
        with pytest.raises(ConfigError, match=f"--keep-float 'nope' names no quantizable {backend.value} layer; "
                                              "they are under /"):  # fmt: skip
            keep_float_names(run.bundle / path, backend, ["nope"])


def test_ort_excluded_layers_stay_float(assets: ExportedAssets, run: QuantizeRun, tmp_path: Path) -> None:
    """What accuracy control does with its ranking: the layers it names are re-quantized as float."""
    from lighthead_edge.compress.calibration import calibration_set_for_bundle
    from lighthead_edge.compress.quantize_ort import OrtQuantSettings, qdq_inputs, quantize_onnx, quantized_nodes

    calib = calibration_set_for_bundle(assets.val_json, run.bundle, size=4).inputs
    names = quantized_nodes(onnx.load(str(run.bundle / "model.onnx")), onnx.load(str(run.bundle / "model_int8.onnx")))
    worst = names[-2:]
    settings = OrtQuantSettings(exclude=tuple(worst))
    result = quantize_onnx(run.bundle / "model.onnx", tmp_path / "x.onnx", calib, settings)
    assert result.kept_float == sorted(worst)
    fed = qdq_inputs(onnx.load(str(tmp_path / "x.onnx")))
    # a float Conv may still read dequantized activations, but never an int8 weight
    model = onnx.load(str(tmp_path / "x.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in (n for n in model.graph.node if n.name in worst):
        weight = producers.get(node.input[1])
        assert weight is None or weight.op_type != "DequantizeLinear", (node.name, fed.get(node.name))


def test_cli_quantize_with_only_calib(assets: ExportedAssets, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lighthead_edge.cli import cli

    out = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["quantize", str(CHECKPOINT), "--calib", str(assets.val_json.parent / "images"),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"bundle: {out}" in result.stdout and f"report: {out / 'report.md'}" in result.stdout
    bundle = load_bundle(out)
    assert {a.key for a in bundle.artifacts} >= {"onnxruntime/int8", "openvino/int8"}
    # no --val: auto ranges cannot score anything, so the calibration extremes are used
    assert bundle.artifact("onnxruntime", "int8").info["quantization"]["scheme"].endswith("activations, MinMax")


def test_cli_ort_ranges_reach_the_quantizer(assets: ExportedAssets, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lighthead_edge.cli import cli

    out = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["quantize", str(CHECKPOINT), "--calib", str(assets.val_json), "--calib-size", "4",
                                      "--backend", "onnxruntime", "--ort-ranges", "averaged", "--runs", "1",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    info = load_bundle(out).artifact("onnxruntime", "int8").info["quantization"]
    assert info["scheme"].endswith("u8 activations, MinMax, averaged per image")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lighthead_edge.cli", "quantize", str(CHECKPOINT), "--calib", str(tmp_path),
           "--max-drop", "0.01", "--out", str(tmp_path / "b")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--val" in proc.stderr


def test_ort_accuracy_control_reports_float_layers(assets: ExportedAssets, tmp_path: Path) -> None:
    """An unreachable budget (INT8 must beat FP32 by 10 points) makes the greedy search revert layers and say why."""
    from lighthead_edge.runtime.bundle import Backend

    settings = QuantizeSettings(backends=(Backend.ONNXRUNTIME,), val_json=str(assets.val_json), calib_size=8,
                                max_drop=0.1, latency_aware=False,
                                bench=BenchSettings(runs=1, warmup=1, throughput_frames=2))  # fmt: skip
    with pytest.raises(ConfigError, match=r"--max-drop must be in \(0, 1\]"):
        replace(settings, max_drop=-0.1)  # a user can't ask for it ...
    object.__setattr__(settings, "max_drop", -0.1)  # ... this test forces it, to drive the search to its end
    run = quantize_checkpoint(CHECKPOINT, tmp_path / "b", calib=assets.val_json, settings=settings, log=lambda m: None)
    info = run.quantization["onnxruntime/int8"]
    assert len(info["kept_float"]) >= 2 and all("alone reads float inputs, rank" in layer["why"]
                                                for layer in info["kept_float"])  # fmt: skip
    assert "still over -0.1" in info["kept_float"][0]["why"]  # unreachable: it says so instead of "within"
    assert info["ranges"]["used"] == "minmax" and set(info["ranges"]["val_ap"]) == {"minmax", "averaged"}
    entry = load_bundle(run.bundle).artifact("onnxruntime", "int8").info["quantization"]
    assert entry["kept_float"] == [layer["name"] for layer in info["kept_float"]]
    assert f"kept in float: `{info['kept_float'][0]['name']}` (accuracy control: AP " in run.report.read_text()
