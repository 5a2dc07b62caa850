"""A frame-in graph made from an already built host graph: the letterbox in front of it, the box mapping behind it.

    wrap_onnx(host_int8_onnx, out_onnx, frame_size=(720, 1280), input_size=(512, 512), metadata=meta)
    wrap_ir(host_int8_xml, out_xml, frame_size=(720, 1280), input_size=(512, 512), metadata=meta)

Why: an INT8 frame-in graph quantized on its own (its own calibration run through the in-graph letterbox) got other
activation ranges than the host graph and matched the host path's INT8 detections on only 2-8% of boxes at IoU 0.99
(NEON model, 640x480 and 1280x720). Wrapped, the frame-in INT8 graph *is* the host INT8 graph with the same
quantization parameters, between a float prefix (:class:`LetterboxImage`: frame -> the host graph's letterboxed uint8
input) and a float suffix (:class:`BoxesToFrame`: boxes -> frame pixels, clipped). Their nodes are named under
``frame_letterbox/``, a float scope (:data:`~lighthead_edge.export.graph.FLOAT_SCOPES`).

ONNX: the three graphs are joined with ``onnx.compose``. OpenVINO: the prefix and suffix are converted from ONNX and
spliced onto the IR's ops (``replace_source_output``), keeping every FakeQuantize of the host IR as it was; the
prefix there is :class:`FrameLetterbox`'s float NCHW image, which replaces the host IR's cast and transpose of its
input, so the frame goes uint8 NHWC -> transpose -> float -> resize -> pad -> the host graph's first op after its
transpose (before: a uint8 NHWC image between the two, and OpenVINO's ``Interpolate``: 38.2 frames/s against the
host graph's 57.1/s, 640x480 frames, INT8, 2 threads, 2 requests; now 55.1/s, the letterbox included).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from lighthead_edge.data.transforms import PAD_BGR
from lighthead_edge.errors import ExportError
from lighthead_edge.export.graph import INPUT_NAME, LETTERBOX_SCOPE, OUTPUT_NAMES, FrameLetterbox, ResizeLinear

PREFIX_OUTPUT = f"{LETTERBOX_SCOPE}/image"  # the prefix's letterboxed image = the host graph's input
MODEL_BOXES = f"{LETTERBOX_SCOPE}/model_boxes"  # the host graph's boxes (model-input pixels) = the suffix's input


class LetterboxImage(nn.Module):
    """``frames`` uint8 [1, h, w, 3] BGR -> the letterboxed uint8 [1, H, W, 3] BGR image a host graph takes.

    The same letterbox as :class:`FrameLetterbox` (same resize, rounding, pad colour and placement), in the engine's
    form (``nhwc``: onnxruntime resizes float NHWC, OpenVINO float NCHW by gathers), ending in the host graph's
    layout. The onnxruntime frame-in graph starts with it; OpenVINO's starts with :class:`FrameLetterbox` itself,
    whose NCHW float output takes the place of the host graph's own cast and transpose (:func:`wrap_ir`).
    """

    def __init__(self, letterbox: FrameLetterbox) -> None:
        super().__init__()
        self.letterbox = letterbox
        self.register_buffer("pad_rows", letterbox.pad_rows.permute(0, 2, 3, 1).contiguous())
        self.register_buffer("pad_cols", letterbox.pad_cols.permute(0, 2, 3, 1).contiguous())

    def forward(self, frames: Tensor) -> Tensor:
        lb = self.letterbox
        nh, nw = lb.resized
        if not lb.nhwc:
            return lb(frames).permute(0, 2, 3, 1).to(torch.uint8)  # whole values 0..255 already: exact
        if lb.resized == lb.frame_size:
            x = frames.to(torch.float32)
        else:
            x = ResizeLinear.apply(frames.to(torch.float32), (1, nh, nw, 3), True).round()
        if self.pad_rows.shape[1]:
            x = torch.cat([x, self.pad_rows], dim=1)
        if self.pad_cols.shape[2]:
            x = torch.cat([x, self.pad_cols], dim=2)
        return x.to(torch.uint8)  # whole values 0..255 already: exact


class BoxesToFrame(nn.Module):
    """boxes [1, D, 4] in model-input pixels -> frame pixels, clipped to the frame (:meth:`FrameLetterbox.to_frame`)."""

    def __init__(self, letterbox: FrameLetterbox) -> None:
        super().__init__()
        self.letterbox = letterbox

    def forward(self, boxes: Tensor) -> Tensor:
        return self.letterbox.to_frame(boxes)


def _export(module: nn.Module, example: Tensor, path: Path, input_name: str, output_name: str, opset: int):
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice; tracer notes on static sizes
        with torch.no_grad():
            torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=[output_name])  # fmt: skip
    return onnx.load(str(path))


def _parts(
    frame_size: tuple[int, int], input_size: tuple[int, int], nhwc: bool, detections: int, opset: int, folder: Path
):
    """The prefix and suffix as ONNX models (nodes under ``frame_letterbox/``), their tensors named for the join."""
    from onnx import compose

    letterbox = FrameLetterbox(frame_size, input_size, PAD_BGR, nhwc=nhwc)
    frames = torch.zeros((1, *frame_size, 3), dtype=torch.uint8)
    head = LetterboxImage(letterbox) if nhwc else letterbox  # OpenVINO: NCHW float, for the host's own transpose
    prefix = _export(head, frames, folder / "prefix.onnx", INPUT_NAME, "image", opset)
    suffix = _export(BoxesToFrame(letterbox), torch.zeros(1, detections, 4), folder / "suffix.onnx", "model_boxes",
                     "boxes", opset)  # fmt: skip
    prefix = compose.add_prefix(prefix, f"{LETTERBOX_SCOPE}/")
    suffix = compose.add_prefix(suffix, f"{LETTERBOX_SCOPE}/to_frame/")
    _rename(prefix.graph, f"{LETTERBOX_SCOPE}/{INPUT_NAME}", INPUT_NAME)
    _rename(suffix.graph, f"{LETTERBOX_SCOPE}/to_frame/model_boxes", MODEL_BOXES)
    _rename(suffix.graph, f"{LETTERBOX_SCOPE}/to_frame/boxes", "boxes")
    return prefix, suffix


def _rename(graph, old: str, new: str) -> None:
    """Rename the tensor ``old`` to ``new`` everywhere in ``graph`` (onnx.GraphProto)."""
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def _detections(graph_outputs) -> int:
    boxes = next(o for o in graph_outputs if o.name == "boxes")
    return boxes.type.tensor_type.shape.dim[1].dim_value


def wrap_onnx(
    host: str | Path, out: str | Path, *, frame_size: tuple[int, int], input_size: tuple[int, int],
    metadata: Mapping[str, object], opset: int = 17,
) -> Path:  # fmt: skip
    """The onnxruntime frame-in graph ``out`` made of the host ONNX graph ``host`` (any precision, e.g. QDQ INT8)
    between the letterbox prefix and the box-mapping suffix; ``metadata`` replaces its ``lighthead_edge.*`` records."""
    import onnx
    from onnx import compose

    from lighthead_edge.export.onnx import check_onnx, set_metadata

    model = onnx.load(str(host))
    with tempfile.TemporaryDirectory() as folder:
        prefix, suffix = _parts(frame_size, input_size, True, _detections(model.graph.output), opset, Path(folder))
    _rename(model.graph, INPUT_NAME, PREFIX_OUTPUT)
    _rename(model.graph, "boxes", MODEL_BOXES)
    for part in (prefix, suffix):
        part.ir_version = model.ir_version
        del part.opset_import[:]
        part.opset_import.extend(model.opset_import)
    joined = compose.merge_models(prefix, model, io_map=[(PREFIX_OUTPUT, PREFIX_OUTPUT)])
    joined = compose.merge_models(joined, suffix, io_map=[(MODEL_BOXES, MODEL_BOXES)])
    outputs = {o.name: o for o in joined.graph.output}
    ordered = [outputs[name] for name in OUTPUT_NAMES]
    del joined.graph.output[:]
    joined.graph.output.extend(ordered)
    joined.producer_name, joined.doc_string = "lighthead-edge", model.doc_string
    set_metadata(joined, metadata)
    check_onnx(joined)
    onnx.save(joined, str(out))
    return Path(out)


def wrap_ir(
    host: str | Path, out: str | Path, *, frame_size: tuple[int, int], input_size: tuple[int, int],
    metadata: Mapping[str, object], opset: int = 17,
) -> Path:  # fmt: skip
    """The OpenVINO frame-in IR ``out`` (+ .bin) made of the host IR ``host`` (e.g. NNCF's INT8 IR, FakeQuantize
    ops untouched) between the letterbox prefix and the box-mapping suffix; ``metadata`` replaces its
    ``lighthead_edge`` rt_info."""
    import onnx
    import openvino as ov

    from lighthead_edge.export.openvino import RT_INFO_SECTION

    core = ov.Core()
    model = core.read_model(str(host))
    results = {next(iter(r.input_value(0).get_names())): r for r in model.get_results()}
    detections = int(results["boxes"].get_output_partial_shape(0)[1].get_length())
    with tempfile.TemporaryDirectory() as folder:
        prefix, suffix = _parts(frame_size, input_size, False, detections, opset, Path(folder))
        onnx.save(prefix, str(Path(folder) / "p.onnx"))
        onnx.save(suffix, str(Path(folder) / "s.onnx"))
        pre, post = core.read_model(str(Path(folder) / "p.onnx")), core.read_model(str(Path(folder) / "s.onnx"))
    letterboxed = pre.get_results()[0].input_value(0)
    for target in list(_host_planar_input(model).get_target_inputs()):
        target.replace_source_output(letterboxed)
    model_boxes = results["boxes"].input_value(0)
    model_boxes.get_tensor().set_names({MODEL_BOXES})
    (post_param,) = post.get_parameters()
    for target in list(post_param.output(0).get_target_inputs()):
        target.replace_source_output(model_boxes)
    framed = post.get_results()[0]
    framed.input_value(0).get_tensor().set_names({"boxes"})
    ordered = [framed if name == "boxes" else results[name] for name in OUTPUT_NAMES]
    wrapped = ov.Model(ordered, pre.get_parameters(), model.get_friendly_name())
    for key in _rt_keys(model):  # NNCF's record of what it did, and the like
        wrapped.set_rt_info(model.get_rt_info(key), key)
    for key, value in metadata.items():
        wrapped.set_rt_info(json.dumps(value, sort_keys=True), [RT_INFO_SECTION, key])
    wrapped.validate_nodes_and_infer_types()
    ov.save_model(wrapped, str(out), compress_to_fp16=False)
    return Path(out)


def _host_planar_input(model):
    """The output of the host IR's ``Convert`` (uint8 -> float) and ``Transpose`` (NHWC -> NCHW) of its input: the
    float BGR image that :class:`FrameLetterbox`'s output replaces."""
    (param,) = model.get_parameters()
    node = param
    for op_type in ("Convert", "Transpose"):
        targets = list(node.output(0).get_target_inputs())
        if len(targets) != 1 or targets[0].get_node().get_type_name() != op_type:
            found = [t.get_node().get_type_name() for t in targets]
            raise ExportError(f"the host IR's input is not taken by one {op_type} (got {found}): not a lighthead-edge "
                              "host graph")  # fmt: skip
        node = targets[0].get_node()
    return node.output(0)


def _rt_keys(model) -> list[str]:
    from lighthead_edge.export.openvino import RT_INFO_SECTION

    return [key for key in model.get_rt_info().keys() if key != RT_INFO_SECTION]
