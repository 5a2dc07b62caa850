"""INT8 post-training quantization for onnxruntime: static QDQ with per-channel s8 weights and u8 activations.

Conv / Gemm / MatMul are quantized (the backbone, the thin-map head's large separable convs and the R-CNN fc), plus
the ReLUs and Adds between them; the float scopes of the export graph (RoI coordinates, box decoding, NMS, softmax)
are excluded by name, so no QuantizeLinear ever feeds RoI arithmetic. ``reduce_range=True`` (7-bit weights) because
this CPU has AVX2 but no VNNI: its u8 x s8 kernel (``vpmaddubsw``) saturates int16 pair sums, which on the
490-channel thin map cost cosine 0.9906 against FP32; 7-bit weights cannot overflow (0.9998, ../shared/ENVIRONMENT.md).

Profiling (:func:`profile_nodes`) says where the time goes, per op type, for FP32 vs INT8 graphs.

Accuracy control (:func:`quantize_artifact` with ``max_drop``) ranks the quantized compute layers by the AP each gives
back in float (:func:`ap_ranking`, probing :func:`float_variant` graphs, no re-calibration) and re-quantizes with the
top 1, 2, 4, ... of them excluded until the AP drop is within budget.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lighthead_edge.evaluate import ValItem, ValSet

COMPUTE_OP_TYPES = ("Conv", "Gemm", "MatMul")
# Clip / Relu / Add are listed too, though they do no INT8 arithmetic worth having: with only the compute ops, every
# ReLU6 and residual Add sat between a Q and a DQ in float, ORT could not chain QLinearConv to QLinearConv, and the
# Q/DQ pairs cost 45 of 106 ms (profile_nodes, mobilenet_v2-S 512, 2 threads). Quantized, ORT folds the ReLUs into
# the conv's output range and runs QLinearAdd: 63 ms against 100 ms FP32. The float scopes stay excluded by name.
QUANTIZED_OP_TYPES = (*COMPUTE_OP_TYPES, "Clip", "Relu", "Add")
RANKING_IMAGES = 300  # val images the per-layer ranking runs on (NNCF's ranking_subset_size default)
Log = Callable[[str], None]


class OrtRanges(str, Enum):
    """How ONNX Runtime INT8 sets activation ranges (``quantize --ort-ranges``).

    ``minmax`` takes the calibration extremes, ``averaged`` averages each image's min/max (``CalibMovingAverage``).
    Neither wins everywhere: measured AP drops against FP32, extremes -> averaged, were 1.03 -> 0.76 points on NEON's
    held-out split, 0.49 -> 0.22 on the synthetic model and 1.12 -> 1.26 on the pruned synthetic model. ``auto``
    therefore quantizes both ways when there is a val set and keeps the one with the higher AP (``minmax`` on a tie or
    without a val set). When neither is within ``--max-drop``, ``auto`` takes ``minmax``: accuracy control's layer
    search got within 0.5 points with 8 of 49 layers in float from it on both NEON and the pruned synthetic model,
    against 32 and 49 of 49 from ``averaged``.
    """

    AUTO = "auto"
    MINMAX = "minmax"
    AVERAGED = "averaged"


@dataclass(frozen=True)
class OrtQuantSettings:
    """Settings of :func:`quantize_onnx`.

    Attributes:
        per_channel: per-output-channel weight scales (per-tensor loses the depthwise convs' small channels).
        reduce_range: 7-bit weights, see the module docstring.
        op_types: the op types to quantize (see :data:`QUANTIZED_OP_TYPES` for why more than the compute ops).
        exclude: extra node names to keep in float (besides the float scopes), e.g. from accuracy control.
        moving_average: activation ranges from the per-image min/max averaged over the calibration set
            (``CalibMovingAverage``) instead of their extremes. ``quantize`` sets it from ``--ort-ranges``
            (:class:`OrtRanges`, whose docstring has the measured effect).
    """

    per_channel: bool = True
    reduce_range: bool = True
    op_types: tuple[str, ...] = QUANTIZED_OP_TYPES
    exclude: tuple[str, ...] = ()
    moving_average: bool = False


@dataclass
class OrtQuantResult:
    """What was quantized: the output path, quantized node names and the nodes kept in float."""

    path: Path
    quantized: list[str]
    kept_float: list[str] = field(default_factory=list)


class _Reader:
    """``CalibrationDataReader`` over preprocessed uint8 inputs (an ``onnxruntime.quantization`` duck type)."""

    def __init__(self, input_name: str, inputs: Iterable[np.ndarray]) -> None:
        self._items = iter([{input_name: x} for x in inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantizable_nodes(model, op_types: Sequence[str] = COMPUTE_OP_TYPES) -> list[str]:
    """Names of the nodes of ``model`` (onnx.ModelProto) that INT8 may quantize: the op types, minus float scopes."""
    from lighthead_edge.export.graph import matches_float_scope

    return [n.name for n in model.graph.node if n.op_type in op_types and not matches_float_scope(n.name)]


def quantize_onnx(
    fp32_path: str | Path, out_path: str | Path, calib: Sequence[np.ndarray], settings: OrtQuantSettings | None = None
) -> OrtQuantResult:
    """Quantize the ONNX model ``fp32_path`` with the calibration inputs ``calib`` and write ``out_path``.

    The graph's metadata (class names, preprocessing, ...) is carried over, so the INT8 file is self-describing too.
    """
    import onnx

    from lighthead_edge.export.graph import float_node_names

    s = settings or OrtQuantSettings()
    model = onnx.load(str(fp32_path))
    exclude = sorted(set(float_node_names(model)) | set(s.exclude))
    prepared = Path(out_path).with_suffix(".prepared.onnx")
    onnx.save(fold_initializer_identities(model), str(prepared))
    try:
        _quantize_static(prepared, Path(out_path), calib, s, exclude, model.graph.input[0].name)
    finally:
        prepared.unlink(missing_ok=True)
    quantized = onnx.load(str(out_path))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    onnx.save(quantized, str(out_path))
    candidates = set(quantizable_nodes(model))
    kept = sorted(n for n in s.exclude if n in candidates)
    return OrtQuantResult(Path(out_path), sorted(candidates - set(exclude)), kept)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """quantize_static warns on the *root* logger (e.g. advice to pre-process); keep that out of our output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_static(
    src: Path, out: Path, calib: Sequence[np.ndarray], s: OrtQuantSettings, exclude: list[str], input_name: str
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _quiet_root_logger():
        quantize_static(
            str(src), str(out), _Reader(input_name, calib),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(s.op_types), per_channel=s.per_channel,
            reduce_range=s.reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
            # u8 activations keep an asymmetric zero point; s8 weights are symmetric, which the int8 GEMM needs
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "CalibMovingAverage": s.moving_average},
        )  # fmt: skip


def fold_initializer_identities(model):
    """Replace every ``Identity`` of an initializer by a copy of that initializer under the Identity's output name.

    Note:
        The legacy exporter de-duplicates equal tensors (e.g. the zero biases of the BN-folded convs) into one
        initializer read through ``Identity`` nodes. ``quantize_static`` then can't see those biases as constants
        ("Expected bias ... to be an initializer"), leaves them float, and ORT can't fuse DQ -> Conv -> Q into
        ``QLinearConv``: the INT8 graph dequantized its weights on every run and was 1.6x *slower* than FP32.
    """
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            array = numpy_helper.to_array(inits[node.input[0]])
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model


def qdq_inputs(model) -> dict[str, list[str]]:
    """For each node of a QDQ ``model`` (onnx.ModelProto): the names of the DequantizeLinear nodes feeding it."""
    producer = {out: node for node in model.graph.node for out in node.output}
    fed: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            src = producer.get(name)
            if src is not None and src.op_type in ("DequantizeLinear", "QuantizeLinear"):
                fed[node.name].append(src.name)
    return dict(fed)


def profile_nodes(model_path: str | Path, image: np.ndarray, *, threads: int = 2, runs: int = 5) -> dict[str, float]:
    """Milliseconds per run spent in each op type of ``model_path`` (ORT's own profiler, optimized graph), by cost.

    The op types are those of the graph ORT actually runs after its optimizations, e.g. ``QLinearConv`` where a
    DQ -> Conv -> Q triple was fused, or ``DequantizeLinear`` where it was not.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    session.run(None, feed)  # warm-up, not counted below (events of the first run are dropped)
    for _ in range(runs):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text(encoding="utf-8"))
    trace.unlink(missing_ok=True)
    return _op_times(events, runs)


def _op_times(events: list[dict], runs: int) -> dict[str, float]:
    """Per op type ms per run, from ORT profile events, excluding the first (warm-up) model run."""
    runs_seen = [e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = sorted(runs_seen)[1] if len(runs_seen) > 1 else 0
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= start:
            totals[e.get("args", {}).get("op_name", "?")] += e["dur"] / 1000.0 / runs
    return dict(sorted(((k, round(v, 3)) for k, v in totals.items()), key=lambda kv: -kv[1]))


def quantized_nodes(fp32, int8, op_types: Sequence[str] = COMPUTE_OP_TYPES) -> list[str]:
    """Names of the ``op_types`` nodes that read a dequantized input in the QDQ model ``int8`` (graph order)."""
    dq_outputs = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    names = {n.name for n in int8.graph.node if any(i in dq_outputs for i in n.input)}
    return [n for n in quantizable_nodes(fp32, op_types) if n in names]


def float_variant(fp32, int8, names: Iterable[str]):
    """A copy of the QDQ model ``int8`` in which the nodes ``names`` read FP32 inputs, as if excluded from quantization.

    Each such input is the FP32 model's own tensor: the float activation the QuantizeLinear read (with the ReLU / Clip
    that ORT folded into the quantization range put back), or the float weight (copied in). Q/DQ nodes left without
    a consumer are dropped. No re-calibration is needed, so trying each layer in float costs one inference session,
    not one quantization run. ``fp32`` is the model as quantized (after :func:`fold_initializer_identities`).
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(int8)
    wanted = set(names)
    reference = {n.name: n for n in fp32.graph.node if n.name in wanted}
    missing = wanted - set(reference) - {n.name for n in model.graph.node}
    if missing:
        raise ValueError(f"no node named {sorted(missing)} in the model")
    float_inits = {t.name: t for t in fp32.graph.initializer}
    fp32_producer = {o: n for n in fp32.graph.node for o in n.output}
    int8_producer = {o: n for n in model.graph.node for o in n.output}
    have = {t.name for t in model.graph.initializer}
    restored: dict[str, onnx.NodeProto] = {}  # activation tensor -> the ReLU / Clip put back in front of it
    order: list[onnx.NodeProto] = []
    for node in model.graph.node:
        ref = reference.get(node.name)
        for i, (now, was) in enumerate(zip(node.input, ref.input, strict=True) if ref is not None else ()):
            if was in float_inits and now in int8_producer:
                # a dequantized weight or bias; ORT names a bias's DequantizeLinear output like the float bias
                name = f"{was}_float"
                if name not in have:
                    tensor = onnx.TensorProto()
                    tensor.CopyFrom(float_inits[was])
                    tensor.name = name
                    model.graph.initializer.append(tensor)
                    have.add(name)
                node.input[i] = name
            elif now != was:
                act, made = fp32_producer.get(was), int8_producer.get(was)
                if act is not None and made is not None and act.op_type != made.op_type:
                    # ORT folded this ReLU / Clip into the QuantizeLinear range of its producer, which now writes
                    # `was` itself, unclamped: put the activation back in float, once, in front of its first reader
                    if was not in restored:
                        back = onnx.NodeProto()
                        back.CopyFrom(act)
                        back.name, back.input[0], back.output[0] = f"{act.name}_float", was, f"{was}_float"
                        restored[was] = back
                        order.append(back)
                    node.input[i] = restored[was].output[0]
                else:
                    node.input[i] = was  # the float activation the QuantizeLinear read
        order.append(node)
    del model.graph.node[:]
    model.graph.node.extend(order)
    _drop_dead_nodes(model)
    return model


def _drop_dead_nodes(model) -> None:
    """Remove nodes (and then initializers) that nothing reads, until none is left."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    read = {i for n in model.graph.node for i in n.input}
    unused = [t for t in model.graph.initializer if t.name not in read]
    for t in unused:
        model.graph.initializer.remove(t)


# ----------------------------------------------------------------------------------------------- accuracy control
def ort_ap(path: Path, val: ValSet, items: Sequence[ValItem] | None = None) -> float:
    """COCO AP of the ONNX graph ``path`` on ``items`` of ``val`` (all of them by default)."""
    from lighthead_edge.runtime.backends import Hint
    from lighthead_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    engine = OnnxRuntimeBackend(path, device="CPU", threads=None, hint=Hint.LATENCY, jobs=None)
    return val.ap(engine.run, items)


def ap_ranking(src: Path, dst: Path, val: ValSet, int8_ap: float, log: Log) -> list[tuple[str, float]]:
    """Each quantized compute layer of ``dst`` (the INT8 graph of ``src``), by the AP it gives back when it alone
    reads float inputs (largest gain first), on the first :data:`RANKING_IMAGES` val images.

    The variants are made from the INT8 graph itself (:func:`float_variant`), so ranking costs one AP evaluation per
    layer and no re-calibration.
    """
    import onnx

    from lighthead_edge.progress import progress

    fp32, int8 = fold_initializer_identities(onnx.load(str(src))), onnx.load(str(dst))
    names = quantized_nodes(fp32, int8)
    subset = val.items[:RANKING_IMAGES]
    reference = int8_ap if len(subset) == len(val.items) else ort_ap(dst, val, subset)
    log(f"  ranking {len(names)} quantized layers by the AP each gives back in float ({len(subset)} val images)")
    probe = dst.with_suffix(".probe.onnx")
    gains: list[tuple[str, float]] = []
    try:
        for name in progress(names, desc="ranking layers"):
            onnx.save(float_variant(fp32, int8, [name]), str(probe))
            gains.append((name, ort_ap(probe, val, subset) - reference))
    finally:
        probe.unlink(missing_ok=True)
    return sorted(gains, key=lambda kv: -kv[1])


def _range_name(averaged: bool) -> str:
    return (OrtRanges.AVERAGED if averaged else OrtRanges.MINMAX).value


def _choose_ranges(
    src: Path, dst: Path, calib: Sequence[np.ndarray], s: OrtQuantSettings, candidates: list[bool],
    val: ValSet | None, base: float | None, max_drop: float | None, log: Log,
) -> tuple[bool, dict[bool, float], str]:  # fmt: skip
    """Quantize ``src`` with each ``moving_average`` candidate (scored on ``val`` if any) and leave the chosen one at
    ``dst`` -> (chosen, val AP per candidate, why)."""
    tried: dict[bool, float] = {}
    for averaged in candidates:
        out = dst if len(candidates) == 1 else dst.with_suffix(f".{_range_name(averaged)}.onnx")
        quantize_onnx(src, out, calib, replace(s, moving_average=averaged))
        if val is not None:
            tried[averaged] = ort_ap(out, val)
            log(f"onnxruntime INT8, {_range_name(averaged)} ranges: AP {tried[averaged]:.4f} against FP32 {base:.4f}")
    why = "the higher val AP"
    if len(candidates) == 1:
        return candidates[0], tried, why
    averaged = max(tried, key=tried.__getitem__)  # a tie keeps minmax, the first candidate
    if max_drop is not None and base - tried[averaged] > max_drop:
        averaged, why = False, "over budget either way; accuracy control searches from minmax"
    for other in candidates:
        path = dst.with_suffix(f".{_range_name(other)}.onnx")
        if other == averaged:
            path.replace(dst)
        else:
            path.unlink()
    log(f"onnxruntime INT8: keeping {_range_name(averaged)} ranges ({why})")
    return averaged, tried, why


def _search(
    src: Path, dst: Path, calib: Sequence[np.ndarray], s: OrtQuantSettings, val: ValSet, base: float, ap: float,
    max_drop: float, log: Log,
) -> tuple[list[dict[str, str]], float]:  # fmt: skip
    """Re-quantize with the top 1, 2, 4, ... of :func:`ap_ranking` in float until the drop is within ``max_drop``
    (or every ranked layer is) -> (the layers kept in float, each with why; the final AP)."""
    log(f"onnxruntime INT8: AP {ap:.4f} against FP32 {base:.4f} (budget {max_drop})")
    ranking = ap_ranking(src, dst, val, ap, log) if base - ap > max_drop else []
    k, kept = 1, set()
    while base - ap > max_drop and k <= len(ranking):
        exclude = tuple(name for name, _ in ranking[:k])
        kept = set(quantize_onnx(src, dst, calib, replace(s, exclude=(*s.exclude, *exclude))).kept_float)
        ap = ort_ap(dst, val)
        log(f"  {k} highest-ranked layer(s) in float: AP {ap:.4f}")
        if k == len(ranking):
            break
        k = min(2 * k, len(ranking))  # the last try keeps every ranked layer in float
    met = "within" if base - ap <= max_drop else "still over"
    why = "accuracy control: AP {:+.4f} when it alone reads float inputs, rank {} of {}; AP drop {:.4f} -> {} {}"
    return [{"name": n, "why": why.format(g, i + 1, len(ranking), base - ap, met, max_drop)}
            for i, (n, g) in enumerate(ranking) if n in kept], ap  # fmt: skip


def quantize_artifact(
    src: Path, dst: Path, calib: Sequence[np.ndarray], settings: OrtQuantSettings, *,
    ranges: OrtRanges = OrtRanges.AUTO, val: ValSet | None = None, max_drop: float | None = None, threads: int = 2,
    log: Log = print,
) -> dict[str, Any]:  # fmt: skip
    """A bundle's QDQ INT8 graph ``dst`` of ``src``, with accuracy control when ``max_drop`` is given -> its report
    info (scheme, float scope, layers kept in float and why, activation ranges, per-op profile).

    Under ``ranges=auto`` with a ``val`` set, both activation-range settings are quantized and the one with the
    higher AP is kept. Accuracy control (:func:`_search`) then reverts the layers whose float inputs give back the
    most AP until the drop is within ``max_drop``.
    """
    if ranges is OrtRanges.AUTO:
        candidates = [False, True] if val is not None else [False]
    else:
        candidates = [ranges is OrtRanges.AVERAGED]
    scored = val if len(candidates) > 1 or max_drop is not None else None
    base = ort_ap(src, scored) if scored is not None else None
    averaged, tried, why = _choose_ranges(src, dst, calib, settings, candidates, scored, base, max_drop, log)
    settings = replace(settings, moving_average=averaged)
    used = _range_name(averaged)
    info: dict[str, Any] = {
        "scheme": "QDQ, per-channel s8 weights (reduce_range), u8 activations, "
                  + ("MinMax, averaged per image" if averaged else "MinMax"),
        "float_scope": _float_scope(src), "kept_float": [],
        "ranges": {"setting": ranges.value, "used": used, "why": why,
                   "val_ap": {_range_name(a): ap for a, ap in tried.items()}},
    }  # fmt: skip
    if max_drop is not None:
        info["kept_float"], ap = _search(src, dst, calib, settings, scored, base, tried[averaged], max_drop, log)
        info["accuracy_control"] = {"fp32_ap": base, "int8_ap": ap, "max_drop": max_drop}
    info["profile_ms"] = profile_nodes(dst, calib[0], threads=threads, runs=3)
    return info


def _float_scope(src: Path) -> int:
    import onnx

    from lighthead_edge.export.graph import float_node_names

    return len(float_node_names(onnx.load(str(src))))
