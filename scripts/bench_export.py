"""Time the export-friendly PS-RoIAlign inside and outside the exported detector, per backend, in one run.

    python scripts/bench_export.py [--rois 300] [--size 512] [--runs 20] [--threads 2]

For the default model (mobilenet_v2, head S, 512x512; random weights, which is fine for timing) it prints, side by
side: the replacement op alone (300 RoIs on the 490 x 32 x 32 thin map) in torch, onnxruntime and OpenVINO, for
both decompositions; the pure-torch reference op; and the whole end-to-end detector (the exported graph, whose
PS-RoIAlign always pools its fixed ``rpn_post_nms_top_n_test`` = 300 RoI slots) in each backend, with the op's share
of the detector's latency. Because the op and the detector are timed in separate runs, a busy machine can skew that
ratio; the last two columns measure the share inside the detector's own runs, from each engine's per-node profile
(the nodes under ``/roi_heads/pooler/``). OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32`` as the runtime does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lighthead_edge.config import ModelConfig
from lighthead_edge.export.bundle import AUTO_METHODS
from lighthead_edge.export.graph import build_export_model, example_input
from lighthead_edge.export.onnx import export_onnx
from lighthead_edge.measure import timings
from lighthead_edge.modeling.detector import build_detector
from lighthead_edge.ops.ps_roi_align import ps_roi_align
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport, PSRoIAlignMethod

Runner = Callable[[], object]


def median_ms(fn: Runner, runs: int, warmup: int = 3) -> float:
    return timings(fn, runs, warmup)["p50"]


def onnxruntime_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def openvino_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    return lambda: request.infer(feeds)


RUNNERS = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}
POOLER_SCOPE = "/roi_heads/pooler/"  # every node of the swapped-in PS-RoIAlign carries this prefix


def onnxruntime_profile(path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int) -> tuple[float, float]:
    """(pooler ms, all nodes ms) per run, from onnxruntime's own per-node profile of ``runs`` runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    pooler = sum(e["dur"] for e in nodes if e["name"].startswith(POOLER_SCOPE))
    return pooler / 1000 / (runs + 1), sum(e["dur"] for e in nodes) / 1000 / (runs + 1)


def openvino_profile(path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int) -> tuple[float, float]:
    """(pooler ms, all nodes ms) per run, from OpenVINO's performance counters over ``runs`` runs."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    for _ in range(3):
        request.infer(feeds)
    pooler = total = 0.0
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1000
            total += ms
            pooler += ms if info.node_name.startswith(POOLER_SCOPE) else 0.0
    return pooler / runs, total / runs


PROFILERS = {"onnxruntime": onnxruntime_profile, "openvino": openvino_profile}


def random_rois(k: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Tensor[K, 5] of boxes inside the image, 8 to 400 pixels a side, all on image 0."""
    wh = 8.0 + torch.rand(k, 2, generator=generator) * (min(400, image_size) - 8.0)
    xy = torch.rand(k, 2, generator=generator) * (image_size - wh)
    return torch.cat([torch.zeros(k, 1), xy, xy + wh], dim=1)


def time_op(config: ModelConfig, rois: int, runs: int, threads: int, tmp: Path) -> dict[tuple[str, str], float]:
    """The pooler alone on a thin map of the detector's shape: {(backend, method): ms}."""
    generator = torch.Generator().manual_seed(0)
    h, w = config.input_size[0] // config.stride, config.input_size[1] // config.stride
    thin = torch.rand(1, config.thin_channels, h, w, generator=generator)
    boxes = random_rois(rois, config.input_size[0], generator)
    geometry = (config.pool_size, 1.0 / config.stride, config.sampling_ratio)
    out = {}
    with torch.inference_mode():
        out[("torch", "reference")] = median_ms(lambda: ps_roi_align(thin, boxes, *geometry), runs)
    feeds = {"input": thin.numpy(), "rois": boxes.numpy()}
    for method in PSRoIAlignMethod:
        # the pooler as the detector graph builds it: one image, RoIs inside it (the rois above are)
        module = PSRoIAlignExport(*geometry, method=method, rois_inside_single_image=True).eval()
        with torch.inference_mode():
            out[("torch", method.value)] = median_ms(lambda m=module: m(thin, boxes), runs)
        path = tmp / f"op_{method.value}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (thin, boxes), str(path), dynamo=False, opset_version=17,
                              input_names=["input", "rois"], output_names=["pooled"])  # fmt: skip
        for backend, make in RUNNERS.items():
            out[(backend, method.value)] = median_ms(make(path, feeds, threads), runs)
    return out


def time_detector(model, runs: int, threads: int, tmp: Path) -> tuple[dict, dict]:
    """The whole detector: eager torch, and the exported graph per backend and method -> ({(backend, method): ms},
    {(backend, method): (pooler ms, all nodes ms)} from the engine's own profiler)."""
    image = example_input(model)
    out, profiles = {}, {}
    with torch.inference_mode():
        x = image.permute(0, 3, 1, 2).flip(1).float()
        out[("torch", "reference")] = median_ms(lambda: model(x), runs)
    for method in PSRoIAlignMethod:
        graph = build_export_model(model, method=method)
        with torch.inference_mode():
            out[("torch", method.value)] = median_ms(lambda g=graph: g(image), runs)
        path = tmp / f"detector_{method.value}.onnx"
        export_onnx(graph, path)
        for backend, make in RUNNERS.items():
            out[(backend, method.value)] = median_ms(make(path, {"images": image.numpy()}, threads), runs)
            profiles[(backend, method.value)] = PROFILERS[backend](path, {"images": image.numpy()}, threads, runs)
    return out, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=300, help="RoIs for the op alone (the graph has 300 slots)")
    parser.add_argument("--size", type=int, default=512, help="square input side")
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig(num_classes=args.classes, input_size=(args.size, args.size))
    model = build_detector(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        op = time_op(config, args.rois, args.runs, args.threads, Path(tmp))
        detector, profiles = time_detector(model, args.runs, args.threads, Path(tmp))
    print(f"{config.backbone}-{config.head_size} {args.size}x{args.size}, {args.rois} RoIs on a "
          f"{config.thin_channels}x{args.size // 16}x{args.size // 16} thin map, {args.threads} threads, "
          f"median of {args.runs}; torch 'reference' = the pure-torch op / the eager model")  # fmt: skip
    print("op / detector: medians of separate runs; in-graph: the engine's per-node profile of the detector's own runs")
    header = f"{'backend':<12} {'PS-RoIAlign':<12} {'op ms':>8} {'detector ms':>12} {'op share':>9}"
    print(header + f" {'in-graph op ms':>15} {'in-graph share':>15}")
    for key, op_ms in op.items():
        total = detector[key]
        line = f"{key[0]:<12} {key[1]:<12} {op_ms:8.2f} {total:12.1f} {100 * op_ms / total:8.1f}%"
        if key in profiles:
            pooler, nodes = profiles[key]
            line += f" {pooler:15.2f} {100 * pooler / nodes:14.1f}%"
        print(line)
    # the op alone is the cleaner comparison: its difference is small against the detector's run-to-run noise
    for backend, auto in AUTO_METHODS.items():
        best = min(PSRoIAlignMethod, key=lambda m, b=backend: op[(b.value, m.value)])
        print(f"faster PS-RoIAlign in {backend.value}: {best.value} (export --method auto uses {auto})")


if __name__ == "__main__":
    main()
