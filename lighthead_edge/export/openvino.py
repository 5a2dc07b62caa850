"""ONNX to OpenVINO IR (``.xml`` + ``.bin``), FP32 and FP16, with the bundle metadata in ``rt_info``.

The IR is converted from the ONNX file rather than from the torch module, so both backends run the same graph, node
names included (the INT8 step's ignored scope matches them). FP16 compresses the weights only; the CPU plugin still
computes in f32 (the runtime pins ``INFERENCE_PRECISION_HINT`` to f32).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import openvino as ov

from lighthead_edge.runtime.bundle import Precision

RT_INFO_SECTION = "lighthead_edge"


def convert_onnx(
    onnx_path: str | Path, xml_path: str | Path, *, precision: Precision, metadata: Mapping[str, object] | None = None
) -> Path:
    """Convert ``onnx_path`` and save it as ``xml_path`` (its ``.bin`` beside it) at ``precision`` (fp32 or fp16)."""
    precision = Precision(precision)
    if precision not in (Precision.FP32, Precision.FP16):
        raise ValueError(f"IR precision must be fp32 or fp16, got {precision.value}")
    model = ov.convert_model(str(onnx_path))
    for key, value in (metadata or {}).items():
        model.set_rt_info(json.dumps(value, sort_keys=True), [RT_INFO_SECTION, key])
    ov.save_model(model, str(xml_path), compress_to_fp16=precision is Precision.FP16)
    return Path(xml_path)


def read_rt_info(model: ov.Model | str | Path) -> dict[str, object]:
    """The ``lighthead_edge`` section of an IR's ``rt_info``, decoded."""
    if not isinstance(model, ov.Model):
        model = ov.Core().read_model(str(model))
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    keys = model.get_rt_info([RT_INFO_SECTION]).astype(dict)
    return {key: json.loads(model.get_rt_info([RT_INFO_SECTION, key]).astype(str)) for key in keys}


def float_op_names(model: ov.Model | str | Path) -> list[str]:
    """Friendly names of the OpenVINO ops to keep in float for INT8 (e.g. ``nncf.IgnoredScope(names=...)``).

    The ops named in a float scope (:data:`~lighthead_edge.export.graph.FLOAT_NODE_PATTERN`), plus the ones that
    conversion created without a module path (e.g. ``Multiply_6093``, a folded ``Div`` of the RoI coordinates, or
    ``num_detections``, renamed after its output) that touch a float-scope op, to a fixed point.
    """
    from lighthead_edge.export.graph import matches_float_scope

    if not isinstance(model, ov.Model):
        model = ov.Core().read_model(str(model))
    ops = [op for op in model.get_ops() if op.get_type_name() not in ("Parameter", "Result")]
    floating = {op.get_friendly_name() for op in ops if matches_float_scope(op.get_friendly_name())}
    # constants are not bridges: one shared by a float op and a backbone op must not pull in the backbone's side
    orphans = [op for op in ops if not op.get_friendly_name().startswith("/") and op.get_type_name() != "Constant"]
    changed = True
    while changed:
        changed = False
        for op in orphans:
            name = op.get_friendly_name()
            if name not in floating and any(n in floating for n in _neighbour_names(op)):
                floating.add(name)
                changed = True
    for op in ops:
        consumers = _neighbour_names(op)
        if op.get_type_name() == "Constant" and consumers and all(n in floating for n in consumers):
            floating.add(op.get_friendly_name())
    return [op.get_friendly_name() for op in ops if op.get_friendly_name() in floating]


def _neighbour_names(op: ov.Node) -> list[str]:
    producers = [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
    consumers = [t.get_node().get_friendly_name() for out in op.outputs() for t in out.get_target_inputs()]
    return producers + consumers
