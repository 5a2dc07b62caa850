"""Time PS-RoIAlign: the pure-torch reference against each export decomposition in torch, onnxruntime and OpenVINO.

    python scripts/bench_ps_roi_align.py [--rois 300] [--channels 490] [--size 32] [--runs 30] [--threads 2]

Prints one table: the median (and best) latency of each (decomposition, backend), the median's ratio to the torch
reference's, and the max abs error against the reference. The RoIs are random boxes, 8 to 400 pixels a side, inside
a 512-pixel image at stride 16, all on one image, as the detector feeds the pooler at inference.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lighthead_edge.measure import timings
from lighthead_edge.ops.ps_roi_align import ps_roi_align
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport, PSRoIAlignMethod


def timings_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    """(median, best) wall time of ``fn()`` in milliseconds. The best shows how much of the median is other load on a
    shared machine."""
    t = timings(fn, runs, warmup)
    return t["p50"], t["min"]


def random_rois(k: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Tensor[K, 5] of boxes inside the image, 8 to 400 pixels a side, all on image 0."""
    wh = 8.0 + torch.rand(k, 2, generator=generator) * (min(400, image_size) - 8.0)
    xy = torch.rand(k, 2, generator=generator) * (image_size - wh)
    return torch.cat([torch.zeros(k, 1), xy, xy + wh], dim=1)


def export(module: torch.nn.Module, args: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    """Legacy exporter, opset 17, with a dynamic number of RoIs as the detector will have."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces itself
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=17, input_names=["input", "rois"],
            output_names=["pooled"], dynamic_axes={"rois": {0: "num_rois"}},
        )  # fmt: skip


def onnxruntime_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)[0]


def openvino_runner(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], np.ndarray]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    return lambda: request.infer(feeds)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=300)
    parser.add_argument("--channels", type=int, default=490, help="alpha * p * p")
    parser.add_argument("--size", type=int, default=32, help="map height and width")
    parser.add_argument("--pool", type=int, default=7)
    parser.add_argument("--sampling-ratio", type=int, default=2, help="<= 0: adaptive")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    scale = 1.0 / 16
    x = torch.randn(1, args.channels, args.size, args.size, generator=generator)
    rois = random_rois(args.rois, int(args.size / scale), generator)
    geometry = (args.pool, scale, args.sampling_ratio)
    with torch.inference_mode():
        reference = ps_roi_align(x, rois, *geometry)
        ref_ms = timings_ms(lambda: ps_roi_align(x, rois, *geometry), args.runs)
    rows = [("reference", "torch", *ref_ms, 0.0)]
    feeds = {"input": x.numpy(), "rois": rois.numpy()}
    with tempfile.TemporaryDirectory() as tmp:
        for method in PSRoIAlignMethod:
            module = PSRoIAlignExport(*geometry, method=method).eval()
            with torch.inference_mode():
                error = float((module(x, rois) - reference).abs().max())
                rows.append((method.value, "torch", *timings_ms(lambda m=module: m(x, rois), args.runs), error))
            path = Path(tmp) / f"{method.value}.onnx"
            export(module, (x, rois), path)
            for backend, make in (("onnxruntime", onnxruntime_runner), ("openvino", openvino_runner)):
                run = make(path, feeds, args.threads)
                error = float(np.abs(run() - reference.numpy()).max())
                rows.append((method.value, backend, *timings_ms(run, args.runs), error))

    print(
        f"PS-RoIAlign, {args.rois} RoIs on a {args.channels}x{args.size}x{args.size} map, p={args.pool}, "
        f"sampling_ratio={args.sampling_ratio}, {args.threads} threads, median of {args.runs}"
    )
    print(f"{'op':<12} {'backend':<12} {'median ms':>10} {'best ms':>8} {'x ref':>7} {'max |err|':>10}")
    for op, backend, median, best, error in rows:
        print(f"{op:<12} {backend:<12} {median:10.2f} {best:8.2f} {median / ref_ms[0]:7.3f} {error:10.1e}")


if __name__ == "__main__":
    main()
