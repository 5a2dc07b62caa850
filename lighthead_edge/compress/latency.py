"""Latency-aware INT8: the quantized layers that run *slower* in INT8 than in FP32 on this CPU, from the engines' own
per-node timings of the two compiled graphs, so that they can stay float.

    timings = layer_timings("model_fp32.xml", "model_int8.xml", image, quantizable_ops(model), backend="openvino")
    slow = slower_in_int8(timings)           # [LayerTiming(name, fp32_ms, int8_ms, lost_in, runs), ...]

Why: on an AVX2-only CPU (no VNNI) the u8 x s8 kernels gain little, and some lose. Measured on an AMD EPYC (AVX2 only,
2 threads, the demo's mobilenet_v2-S 512 bundle): OpenVINO ran the fc-2048 in 25 ms FP32 (``brgemm_avx2_f32``) and in
30 ms INT8 (``jit_gemm_I8``, behind a dequantizing multiply), while the 15x1 / 1x15 thin-map convs went from 28 to 10-20
ms. A layer kept float then costs nothing that INT8 would have saved.

The timings are the engines' own: OpenVINO's per-node performance counters (``PERF_COUNT``), ONNX Runtime's profiler.
Each compiled node is mapped back to the quantizable layer it computes (OpenVINO fuses bias, activation and
dequantization into the layer's node and names it after the layer, e.g. ``.../Conv/WithoutBiases`` or
``.../Gemm/WithoutBiases/DequantizationMultiply``; ONNX Runtime names fused FP32 convs after their output tensor,
``<activation output>_nchwc``, and fused INT8 ones ``<node>_token_<k>``). The two graphs run in turn, and a layer
counts as slower only when its median loses and it lost in most of the paired runs: a shared CPU is noisy.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUNS = 9
MIN_LOSS_MS = 0.05  # a layer is "slower in INT8" when its median loss is above this and MIN_LOSS_RATIO of FP32,
MIN_LOSS_RATIO = 0.05
MIN_AGREEMENT = 2 / 3  # ... and INT8 lost in at least this share of the paired runs (a shared CPU is noisy)


@dataclass(frozen=True)
class LayerTiming:
    """One quantizable layer in the FP32 and the INT8 graph, run in turn: median ms per inference of each, and in
    how many of the ``runs`` pairs the INT8 graph's layer took longer."""

    name: str
    fp32_ms: float
    int8_ms: float
    lost_in: int
    runs: int

    @property
    def slower(self) -> bool:
        """INT8 loses (see :data:`MIN_LOSS_MS`, :data:`MIN_LOSS_RATIO`, :data:`MIN_AGREEMENT`)."""
        lost = self.int8_ms - self.fp32_ms
        steady = self.lost_in >= MIN_AGREEMENT * self.runs
        return steady and lost > MIN_LOSS_MS and lost > MIN_LOSS_RATIO * self.fp32_ms

    def why(self) -> str:
        return (f"slower in INT8 on this CPU: {self.int8_ms:.2f} ms against {self.fp32_ms:.2f} ms in FP32 "
                f"(medians; slower in {self.lost_in} of {self.runs} paired runs)")  # fmt: skip

    def to_dict(self) -> dict[str, float | str | int]:
        return {"name": self.name, "fp32_ms": round(self.fp32_ms, 3), "int8_ms": round(self.int8_ms, 3),
                "lost_in": self.lost_in, "runs": self.runs}  # fmt: skip


def _assign(node: str, candidates: Sequence[str]) -> str | None:
    """The candidate layer a compiled node computes: equal, or one is the other plus ``/...`` (fused suffixes, or a
    fused node named after the layer's bias Add); the longest such candidate."""
    hits = [c for c in candidates if node == c or node.startswith(c + "/") or c.startswith(node + "/")]
    return max(hits, key=len) if hits else None


class _OvTimer:
    """Per-layer ms of one run of an IR, from OpenVINO's performance counters."""

    def __init__(self, xml: str | Path, image: np.ndarray, candidates: Sequence[str], threads: int) -> None:
        import openvino as ov

        config = {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32"}
        self.request = ov.Core().compile_model(str(xml), "CPU", config).create_infer_request()
        self.image, self.candidates = image, candidates
        self.request.infer({0: image})  # warm-up

    def run(self) -> dict[str, float]:
        self.request.infer({0: self.image})
        times: dict[str, float] = defaultdict(float)
        for info in self.request.profiling_info:
            layer = _assign(info.node_name, self.candidates)
            if layer is not None:
                times[layer] += info.real_time.total_seconds() * 1000.0
        return times

    def finish(self) -> list[dict[str, float]] | None:
        return None  # each run's times came from run()


def _ort_node_of(event_name: str, producer_of: dict[str, str]) -> str:
    """The graph node an ORT profiler event is about (see the module docstring for ORT's naming)."""
    name = event_name.removesuffix("_kernel_time").removeprefix("fused ")
    name = re.sub(r"_token_\d+$", "", name)
    if name.endswith("_nchwc"):
        name = producer_of.get(name.removesuffix("_nchwc"), name)
    return name


class _OrtTimer:
    """Per-layer ms of each run of an ONNX graph, from ONNX Runtime's profiler (read once, at :meth:`finish`)."""

    def __init__(self, path: str | Path, image: np.ndarray, candidates: Sequence[str], threads: int) -> None:
        import onnx
        import onnxruntime as ort

        graph = onnx.load(str(path), load_external_data=False).graph
        produced = {out: node for node in graph.node for out in node.output}
        self.producer_of = {}  # output of a conv, or of the ReLU / Clip fused into it -> the conv's node name
        for node in graph.node:
            source = node
            while source.op_type in ("Relu", "Clip") and source.input[0] in produced:
                source = produced[source.input[0]]
            for out in node.output:
                self.producer_of[out] = source.name
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: image}
        self.candidates = candidates
        self.session.run(None, self.feed)  # warm-up

    def run(self) -> None:
        self.session.run(None, self.feed)

    def finish(self) -> list[dict[str, float]]:
        trace = Path(self.session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
        trace.unlink(missing_ok=True)
        starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")[1:]
        per_run: list[dict[str, float]] = [defaultdict(float) for _ in starts]
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or not starts:
                continue
            k = int(np.searchsorted(starts, e["ts"], side="right")) - 1
            if k < 0:
                continue  # the warm-up run
            layer = _assign(_ort_node_of(e["name"], self.producer_of), self.candidates)
            if layer is not None:
                per_run[k][layer] += e["dur"] / 1000.0
        return per_run


def layer_timings(
    fp32: str | Path, int8: str | Path, image: np.ndarray, candidates: Sequence[str], *, backend: str,
    threads: int = 2, runs: int = RUNS,
) -> list[LayerTiming]:  # fmt: skip
    """Each layer of ``candidates`` timed in the FP32 graph and the INT8 graph of one backend ("openvino": IRs,
    "onnxruntime": ONNX files), the two run in turn ``runs`` times on ``image``; by INT8 loss, largest first."""
    timer = _OvTimer if backend == "openvino" else _OrtTimer
    timers = [timer(path, image, candidates, threads) for path in (fp32, int8)]
    runs_of: list[list[dict[str, float]]] = [[], []]
    for _ in range(runs):
        for k, t in enumerate(timers):
            got = t.run()
            if got is not None:
                runs_of[k].append(got)
    for k, t in enumerate(timers):
        done = t.finish()
        if done is not None:
            runs_of[k] = done
    out = []
    for name in candidates:
        a = [r.get(name, 0.0) for r in runs_of[0]]
        b = [r.get(name, 0.0) for r in runs_of[1]]
        if not any(a) or not any(b):
            continue  # not seen in one of the graphs (e.g. folded away)
        lost = sum(y > x for x, y in zip(a, b, strict=False))
        out.append(LayerTiming(name, statistics.median(a), statistics.median(b), lost, min(len(a), len(b))))
    return sorted(out, key=lambda t: t.fp32_ms - t.int8_ms)


def slower_in_int8(timings: Iterable[LayerTiming]) -> list[LayerTiming]:
    """The layers of ``timings`` that INT8 makes slower (:attr:`LayerTiming.slower`)."""
    return [t for t in timings if t.slower]
