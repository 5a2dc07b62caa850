"""The export graph to one ONNX file: legacy exporter (``dynamo=False``), opset 17, weights inside, static shapes.

The legacy exporter is used because the dynamo one writes weights to a separate ``.onnx.data`` file and may leave the
model at opset 18 when asked for 17 (see ENVIRONMENT.md).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import onnx
import torch

from lighthead_edge.errors import ExportError
from lighthead_edge.export.graph import INPUT_NAME, OUTPUT_NAMES, EndToEndDetector, example_input

OPSET = 17
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
METADATA_PREFIX = "lighthead_edge."


def export_onnx(
    module: EndToEndDetector, path: str | Path, *, opset: int = OPSET, metadata: Mapping[str, object] | None = None
) -> onnx.ModelProto:
    """Trace ``module`` into ``path`` and check it; ``metadata`` values go into ``metadata_props`` as JSON.

    Raises ``ExportError`` if the graph fails the ONNX checker or uses an op outside the standard domains.
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its deprecation
        # The tracer warns where Python branches on a tensor's shape: the padding buffers (graph.FoldedPreprocess)
        # and the RoI count (PSRoIAlignExport), both fixed for one export (static input size, P RoI slots), so the
        # branch it records is the only one the graph can take.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # A channel flip (BGR -> RGB) left in the graph is a step -1 Slice of its input (both engines' graphs move it
        # into the first conv; a backbone that doesn't start with a plain conv keeps it), which constant folding
        # can't fold and needn't: it acts on the image. torch would say so three times, to the user's terminal.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        with torch.no_grad():
            torch.onnx.export(
                module, (example_input(module),), str(path), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), do_constant_folding=True,
            )  # fmt: skip
    model = onnx.load(str(path))
    set_metadata(model, metadata or {})
    model.producer_name = "lighthead-edge"
    model.doc_string = "Light-Head R-CNN, end to end: letterboxed uint8 BGR image in, detections out"
    check_onnx(model)
    onnx.save(model, str(path))
    return model


def nonstandard_ops(model: onnx.ModelProto) -> list[str]:
    """``domain::op_type`` of every node (subgraphs included) outside the standard ONNX domains."""
    found = []
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                found.append(f"{node.domain}::{node.op_type}")
            for attr in node.attribute:  # If / Loop / Scan bodies
                stack += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
    return found


def check_onnx(model: onnx.ModelProto) -> None:
    """The ONNX checker (with shape inference) plus "standard domains only"; ``ExportError`` otherwise."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph is invalid: {str(exc).splitlines()[0]}") from None
    custom = sorted(set(nonstandard_ops(model)))
    if custom:
        raise ExportError(f"the exported graph uses non-standard ops {custom}; stock runtimes can't run it")


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, object]) -> None:
    """Write ``metadata`` into ``metadata_props`` under ``lighthead_edge.<key>``, values as JSON."""
    kept = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, json.dumps(value, sort_keys=True)


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, object]:
    """The ``lighthead_edge.*`` metadata of an ONNX model (or file), decoded."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return {
        p.key[len(METADATA_PREFIX) :]: json.loads(p.value)
        for p in model.metadata_props
        if p.key.startswith(METADATA_PREFIX)
    }
