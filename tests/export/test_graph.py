"""The end-to-end export graph: eager equality with the model, the ONNX file's form, and the float scopes."""

from __future__ import annotations

import re

import numpy as np
import onnx
import openvino as ov
import pytest
import torch

from lighthead_edge.data.coco import CocoDetection
from lighthead_edge.export.graph import (
    FLOAT_NODE_PATTERN,
    INPUT_NAME,
    OUTPUT_NAMES,
    NonMaxSuppression,
    build_export_model,
    float_node_names,
)
from lighthead_edge.export.onnx import nonstandard_ops
from lighthead_edge.export.openvino import float_op_names
from lighthead_edge.ops.nms import batched_nms
from lighthead_edge.ops.ps_roi_align import PSRoIAlign
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport

# module scopes whose arithmetic INT8 may quantize (convs, fcs, normalisation); everything else computes boxes
QUANTIZABLE_SCOPES = r"/(preprocess|backbone|rpn_head|thin_head|roi_heads/head)/.*"
BOX_ARITHMETIC = {"Mul", "Add", "Sub", "Div", "Exp", "Softmax", "NonMaxSuppression", "TopK", "Clip", "Max", "Min"}


def assert_same_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, expected: dict) -> None:
    """The graph's first rows against the eager detections, in a canonical order (label, then box): tied or
    near-tied scores (within float rounding, which an untrained head produces) may come out in either order."""

    def canonical(b: torch.Tensor, s: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r = b.numpy().round(2)
        keys = np.lexsort([-s.numpy(), r[:, 3], r[:, 2], r[:, 1], r[:, 0], lab.numpy()])
        order = torch.from_numpy(keys)
        return b[order], s[order], lab[order]

    b, s, lab = canonical(boxes, scores, labels)
    eb, es, elab = canonical(expected["boxes"], expected["scores"], expected["labels"])
    torch.testing.assert_close(b, eb, atol=1e-3, rtol=0)
    torch.testing.assert_close(s, es, atol=1e-5, rtol=0)
    assert torch.equal(lab, elab)


def _to_uint8_bgr(image: torch.Tensor) -> torch.Tensor:
    """CocoDetection's Tensor[3, H, W] RGB float (integral values) -> the graph's Tensor[1, H, W, 3] uint8 BGR."""
    return image.permute(1, 2, 0).flip(-1).round().to(torch.uint8)[None].contiguous()


@pytest.mark.parametrize(
    ("method", "engine"), [("grid_sample", "onnxruntime"), ("grid_sample", "openvino"), ("gather", "onnxruntime")]
)
def test_graph_equals_the_eager_model(assets, eager, method, engine) -> None:
    """Each engine's form of the graph (folded stem / grid by broadcasting) gives the eager detections."""
    model, _ = eager
    graph = build_export_model(model, method=method, engine=engine)
    assert isinstance(graph.roi_heads.pooler, PSRoIAlignExport)
    assert isinstance(model.roi_heads.pooler, PSRoIAlign)  # swapped on a copy
    dataset = CocoDetection(assets.val_json, input_size=model.config.input_size)
    total = 0
    with torch.no_grad():
        for index in range(6):
            image, _ = dataset[index]
            expected = model(image[None])[0]
            boxes, scores, labels, num = graph(_to_uint8_bgr(image))
            n = int(num)
            total += n
            assert n == len(expected["scores"])
            assert_same_detections(boxes[0, :n], scores[0, :n], labels[0, :n], expected)
            d = model.config.detections_per_img
            assert boxes.shape == (1, d, 4) and scores.shape == (1, d) and labels.shape == (1, d)
            assert not boxes[0, n:].any() and not scores[0, n:].any() and not labels[0, n:].any()
    assert total > 20, "the fixture model should detect something on these images"


def test_nms_function_follows_the_onnx_contract() -> None:
    """Classes as NMS batches give what batched_nms gives; rows are (batch, class, index) by decreasing score."""
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 40, 2, generator=generator) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 40, 2, generator=generator) * 30], dim=2)
    scores = torch.rand(2, 1, 40, generator=generator)
    rows = NonMaxSuppression.apply(boxes, scores, 7, 0.5, 0.3)
    assert rows.dtype == torch.int64 and rows.shape[1] == 3
    for b in range(2):
        mine = rows[rows[:, 0] == b, 2]
        ok = torch.nonzero(scores[b, 0] > 0.3).flatten()
        expected = ok[batched_nms(boxes[b, ok], scores[b, 0, ok], torch.zeros_like(ok), 0.5)][:7]
        assert torch.equal(mine, expected)


def test_onnx_file_is_standard_static_and_single(assets, eager) -> None:
    model, _ = eager
    path = assets.bundle / "model.onnx"
    proto = onnx.load(str(path))
    domains, stack = set(), [proto.graph]
    while stack:  # walk every graph, subgraphs included
        graph = stack.pop()
        for node in graph.node:
            domains.add(node.domain)
            for attr in node.attribute:
                stack += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
    assert domains <= {"", "ai.onnx"}
    assert nonstandard_ops(proto) == []
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 17)}
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("NonMaxSuppression") == 2 and "GridSample" in ops

    def dims(value: onnx.ValueInfoProto) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    h, w = model.config.input_size
    d = model.config.detections_per_img
    (inp,) = proto.graph.input
    assert inp.name == INPUT_NAME and dims(inp) == [1, h, w, 3]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    outputs = {o.name: dims(o) for o in proto.graph.output}
    assert outputs == {"boxes": [1, d, 4], "scores": [1, d], "labels": [1, d], "num_detections": [1]}
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)


def test_float_scopes_cover_all_box_arithmetic_in_onnx(assets) -> None:
    proto = onnx.load(str(assets.bundle / "model.onnx"))
    names = float_node_names(proto)
    kept = set(names)
    for node in proto.graph.node:
        if node.op_type in BOX_ARITHMETIC and not re.fullmatch(QUANTIZABLE_SCOPES, node.name):
            assert node.name in kept, f"{node.op_type} {node.name} is box arithmetic outside the float scopes"
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            assert node.name not in kept
    assert any("/rpn_proposals/" in n for n in names) and any("/detection_postprocess/" in n for n in names)
    assert any("ps_roi_align_coords" in n for n in names)


def test_float_op_names_cover_all_box_arithmetic_in_openvino(assets) -> None:
    model = ov.Core().read_model(str(assets.bundle / "model_fp32.xml"))
    kept = set(float_op_names(model))
    arithmetic = {"Multiply", "Add", "Subtract", "Divide", "Exp", "SoftMax", "NonMaxSuppression", "TopK", "Clamp",
                  "Maximum", "Minimum", "ReduceSum"}  # fmt: skip
    for op in model.get_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in ("Convolution", "MatMul", "GroupConvolution"):
            assert name not in kept
        elif op.get_type_name() in arithmetic and not re.fullmatch(QUANTIZABLE_SCOPES, name):
            # the PS-RoIAlign weighted sum is float too, by FLOAT_NODE_PATTERN
            assert name in kept, f"{op.get_type_name()} {name} is box arithmetic outside the float scopes"
    # beyond the float scopes, only ops conversion named itself (and constants only float ops read) are added
    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    extra = [n for n in kept if not re.fullmatch(FLOAT_NODE_PATTERN, n) and ops[n] != "Constant"]
    assert extra and all(not n.startswith("/") for n in extra)


def test_detections_pad_when_fewer_candidates_than_rows(eager) -> None:
    """C * P < D: the outputs are padded to D rows statically."""
    from dataclasses import replace

    from lighthead_edge.modeling.detector import build_detector

    model, _ = eager
    config = replace(model.config, rpn_post_nms_top_n_test=10, detections_per_img=60)
    small = build_detector(config).eval()
    small.load_state_dict(model.state_dict())
    graph = build_export_model(small)
    image = torch.from_numpy(np.full((1, *config.input_size, 3), 128, np.uint8))
    with torch.no_grad():
        boxes, scores, labels, num = graph(image)
    assert boxes.shape == (1, 60, 4) and scores.shape == (1, 60) and labels.shape == (1, 60)
    assert int(num) <= 40


@pytest.mark.parametrize(("class_agnostic", "sampling_ratio"), [(False, 2), (True, 0)])
def test_graph_equals_eager_for_other_head_settings(class_agnostic, sampling_ratio) -> None:
    """Class-specific boxes (NMS batches with their own boxes) and adaptive sampling (a static max_grid)."""
    from lighthead_edge.config import ModelConfig
    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    config = ModelConfig(num_classes=3, backbone="tiny", input_size=(96, 128), rpn_channels=32, kernel_size=5,
                         fc_dim=64, rpn_post_nms_top_n_test=40, class_agnostic_reg=class_agnostic,
                         sampling_ratio=sampling_ratio, score_thresh=0.2)  # fmt: skip
    model = build_detector(config).eval()
    # spread the untrained scores and deltas, so that detections exist and no two scores tie
    torch.nn.init.normal_(model.rpn.head.cls_logits.weight, std=0.3)
    torch.nn.init.normal_(model.roi_heads.head.cls_score.weight, std=0.3)
    torch.nn.init.normal_(model.roi_heads.head.bbox_pred.weight, std=0.05)
    graph = build_export_model(model)
    image = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(image.permute(0, 3, 1, 2).flip(1).float())[0]
        boxes, scores, labels, num = graph(image)
    n = int(num)
    assert n == len(expected["scores"]) > 5
    assert_same_detections(boxes[0, :n], scores[0, :n], labels[0, :n], expected)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "tiny"])
def test_normalisation_folds_exactly_into_the_first_conv(backbone) -> None:
    """Folded stem (raw BGR bordered with the mean, mean/std/channel swap in the conv) == normalise-then-conv,
    border pixels included, and the graph has no Sub/Div/Slice left before the backbone."""
    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.graph import FoldedPreprocess, Preprocess
    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, backbone=backbone, input_size=(64, 96), fc_dim=64, kernel_size=5)
    model = build_detector(config).eval()
    for m in model.backbone.modules():  # non-trivial BN statistics, so a wrong bias would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    graph = build_export_model(model)
    assert isinstance(graph.preprocess, FoldedPreprocess)
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.backbone(model.normalize(image.permute(0, 3, 1, 2).flip(1).float()))
        folded = graph.backbone(graph.preprocess(image))
        reference = model.backbone(Preprocess(config.pixel_mean, config.pixel_std)(image))  # the fallback form
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(reference, expected, atol=1e-4, rtol=1e-4)
    # the eager model's first conv is untouched (the fold works on the export copy)
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.padding != (0, 0)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "tiny"])
def test_openvino_graph_moves_the_channel_swap_into_the_first_conv(backbone, tmp_path) -> None:
    """OpenVINO's form keeps the normalisation before the first conv (its INT8 input quantizer sits there) but has
    the BGR -> RGB swap in the conv's weights: the same backbone output, no step -1 Slice in the ONNX graph, and the
    eager model's conv untouched."""
    import onnx

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.graph import Preprocess
    from lighthead_edge.export.onnx import export_onnx
    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, backbone=backbone, input_size=(64, 96), fc_dim=64, kernel_size=5)
    model = build_detector(config).eval()
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    before = first.weight.detach().clone()
    graph = build_export_model(model, engine="openvino")
    assert isinstance(graph.preprocess, Preprocess) and graph.preprocess.swapped_in_conv
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.backbone(model.normalize(image.permute(0, 3, 1, 2).flip(1).float()))
        swapped = graph.backbone(graph.preprocess(image))
    torch.testing.assert_close(swapped, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(first.weight, before)
    onnx_model = export_onnx(graph, tmp_path / "model.onnx")
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    constants.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
                      for n in onnx_model.graph.node if n.op_type == "Constant" and n.attribute[0].type == 4})
    negative_steps = [n.name for n in onnx_model.graph.node if n.op_type == "Slice" and len(n.input) > 4
                      and n.input[4] in constants and (constants[n.input[4]] < 0).any()]  # fmt: skip
    assert negative_steps == []


def test_first_conv_not_fed_by_the_input_is_not_folded() -> None:
    from lighthead_edge.export.graph import first_conv

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x * 2)

    assert first_conv(Scaled(), torch.zeros(1, 3, 8, 8)) is None
    plain = Scaled()
    plain.forward = lambda x: plain.conv(x)
    assert first_conv(plain, torch.zeros(1, 3, 8, 8))[2] is plain.conv


def test_bin_major_thin_map_pools_the_same() -> None:
    """The export graph's thin map is reordered (bin, group) and its pooler reads it so: same pooled features."""
    from lighthead_edge.config import ModelConfig
    from lighthead_edge.modeling.detector import build_detector
    from lighthead_edge.ops.ps_roi_align_export import bin_major_order

    assert bin_major_order(6, 3).tolist() == [0, 3, 1, 4, 2, 5]
    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, backbone="tiny", input_size=(64, 96), fc_dim=64, kernel_size=5)
    model = build_detector(config).eval()
    graph = build_export_model(model)
    assert graph.roi_heads.pooler.bin_major
    features = torch.randn(1, model.backbone.out_channels, 4, 6)
    rois = torch.tensor([[0, 1.0, 2.0, 60.0, 50.0], [0, 10.0, 3.0, 30.0, 40.0]])
    with torch.no_grad():
        expected = model.roi_heads.pooler(model.thin_head(features), rois)
        pooled = graph.roi_heads.pooler(graph.thin_head(features), rois)
        head, expected_head = (
            graph.roi_heads(graph.thin_head(features), rois),
            model.roi_heads(model.thin_head(features), rois),
        )
    assert pooled.shape == (2, 7, 7, 10)  # channels last
    torch.testing.assert_close(pooled.permute(0, 3, 1, 2), expected, atol=1e-5, rtol=1e-5)
    for a, b in zip(head, expected_head, strict=True):  # the fc's columns follow the order
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_export_tells_the_user_nothing_about_the_tracer(tmp_path) -> None:
    """torch's notes on the trace (constant folding of the input's channel-flip Slice, Python branches fixed for one
    export) are not the user's business: an export prints no warning."""
    import warnings

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.onnx import export_onnx
    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    model = build_detector(ModelConfig(num_classes=2, backbone="tiny", input_size=(64, 64), kernel_size=3,
                                       fc_dim=32, rpn_post_nms_top_n_test=10)).eval()  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(build_export_model(model), tmp_path / "model.onnx")
    assert [str(w.message) for w in caught] == []
