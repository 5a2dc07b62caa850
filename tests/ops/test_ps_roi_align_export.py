"""The export-friendly PS-RoIAlign against the pure-torch reference, in torch, onnxruntime and OpenVINO.

Each (case, method) is exported once, traced on 3 small RoIs, and then run on other RoIs (more of them, larger,
partly outside the map, tiny, degenerate), so a graph that had baked in the example's RoI count or adaptive grid
would fail.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lighthead_edge.ops.ps_roi_align import PSRoIAlign, ps_roi_align
from lighthead_edge.ops.ps_roi_align_export import (
    COORDS_SCOPE,
    FLOAT_NODE_PATTERN,
    WEIGHTED_SUM_SCOPE,
    PSRoIAlignExport,
    PSRoIAlignMethod,
    float_node_names,
    max_adaptive_grid,
    ps_roi_align_export,
)

TOLERANCE = 1e-4
METHODS = [m.value for m in PSRoIAlignMethod]
BACKENDS = ["torch", "onnxruntime", "openvino"]
# all that may run outside the float scopes: data movement, shape plumbing and the one sampling op, no arithmetic
ONNX_DATA_OPS = {"Reshape", "Transpose", "Shape", "Gather", "Unsqueeze", "Concat", "Constant"}
OPENVINO_DATA_OPS = {
    "Parameter",
    "Result",
    "Constant",
    "Reshape",
    "Transpose",
    "ShapeOf",
    "Gather",
    "Unsqueeze",
    "Concat",
}
SAMPLING_OPS = {"gather": "GatherElements", "grid_sample": "GridSample"}


@dataclass(frozen=True)
class Case:
    """A map (Tensor[n, c, h, w]) at ``spatial_scale``, pooled to ``output_size`` from ``k`` RoIs."""

    n: int
    c: int
    h: int
    w: int
    output_size: int | tuple[int, int]
    spatial_scale: float
    sampling_ratio: int
    k: int = 24
    clip_to_image: bool = False  # boxes inside the image, as the detector's: the static max_grid bound holds
    static_grid: bool = False  # export with max_grid = max_adaptive_grid(image size) instead of a dynamic grid

    @property
    def image_size(self) -> tuple[float, float]:
        return self.h / self.spatial_scale, self.w / self.spatial_scale

    @property
    def max_grid(self) -> tuple[int, int] | None:
        return max_adaptive_grid(self.image_size, self.output_size, self.spatial_scale) if self.static_grid else None


CASES = {
    "alpha10_p7_sr2": Case(1, 490, 14, 18, 7, 1 / 16, 2),  # the paper's thin map: 10 x 7 x 7
    "alpha2_p3_sr1_batch3": Case(3, 18, 9, 11, 3, 1 / 4, 1, k=30),
    "alpha4_p5_adaptive_batch2": Case(2, 100, 10, 12, 5, 1 / 2, 0),
    "alpha2_p3x2_sr2_batch2": Case(2, 12, 7, 9, (3, 2), 1 / 4, 2),
    "alpha3_p2x3_adaptive": Case(1, 18, 8, 6, (2, 3), 1.0, -1),
    "alpha2_p3_adaptive_static_grid_batch2": Case(2, 18, 9, 11, 3, 1 / 4, 0, clip_to_image=True, static_grid=True),
}


def make_rois(case: Case, k: int, generator: torch.Generator) -> torch.Tensor:
    """Tensor[k, 5] on random images: a quarter tiny (< 1 feature pixel), one in eight degenerate (x2 < x1 or
    y2 < y1), the rest up to 80% of the image and, unless ``case.clip_to_image``, up to 30% outside it."""
    ih, iw = case.image_size
    size = torch.tensor([iw, ih])
    u = torch.rand(k, 4, generator=generator)
    wh = u[:, 2:] * 0.8 * size
    wh[: k // 4] = u[: k // 4, 2:] / case.spatial_scale  # tiny
    wh[k // 4 : k // 4 + k // 8] *= -0.2  # degenerate
    if case.clip_to_image:
        xy = u[:, :2] * (size - wh.abs()) + (-wh).clamp(min=0)  # both corners inside the image
    else:
        xy = (u[:, :2] * 1.6 - 0.3) * size
    batch = torch.randint(0, case.n, (k, 1), generator=generator).float()
    return torch.cat([batch, xy, xy + wh], dim=1)


def make_inputs(case: Case, seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(case.n, case.c, case.h, case.w, generator=generator)
    return x, make_rois(case, k, generator)


@dataclass
class Exported:
    """One (case, method): the module, its ONNX file and the warnings the export raised."""

    module: PSRoIAlignExport
    path: Path
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def onnxruntime(self):  # noqa: ANN201
        import onnxruntime as ort

        return ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])

    @cached_property
    def openvino(self):  # noqa: ANN201
        import openvino as ov

        return ov.Core().compile_model(str(self.path), "CPU")

    def run(self, backend: str, x: torch.Tensor, rois: torch.Tensor) -> np.ndarray:
        if backend == "torch":
            with torch.no_grad():
                return self.module(x, rois).numpy()
        feeds = {"input": x.numpy(), "rois": rois.numpy()}
        if backend == "onnxruntime":
            return self.onnxruntime.run(None, feeds)[0]
        return self.openvino(feeds)[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """exported(case_name, method) -> Exported, each exported once per module."""
    cache: dict[tuple[str, str], Exported] = {}
    folder = tmp_path_factory.mktemp("ps_roi_align_export")

    def get(name: str, method: str) -> Exported:
        if (name, method) not in cache:
            case = CASES[name]
            module = PSRoIAlignExport(
                case.output_size, case.spatial_scale, case.sampling_ratio, method=method, max_grid=case.max_grid
            )
            path = folder / f"{name}-{method}.onnx"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.onnx.export(
                    module, make_inputs(case, seed=1, k=3), str(path), dynamo=False, opset_version=17,
                    input_names=["input", "rois"], output_names=["pooled"], dynamic_axes={"rois": {0: "num_rois"}},
                )  # fmt: skip
            # the legacy exporter's own deprecation notices are not ours
            messages = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
            cache[(name, method)] = Exported(module, path, messages)
        return cache[(name, method)]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(exported, name: str, method: str, backend: str) -> None:
    case = CASES[name]
    x, rois = make_inputs(case, seed=2, k=case.k)
    expected = ps_roi_align(x, rois, case.output_size, case.spatial_scale, case.sampling_ratio).numpy()
    actual = exported(name, method).run(backend, x, rois)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_graph_is_standard_onnx(exported, name: str, method: str) -> None:
    result = exported(name, method)
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
    assert [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")] == [17]
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert result.warnings == [], "a TracerWarning means a value was baked into the graph"


@pytest.mark.parametrize("method", METHODS)
def test_arithmetic_is_in_the_float_scopes(exported, method: str) -> None:
    """All arithmetic is under COORDS_SCOPE or WEIGHTED_SUM_SCOPE; outside them only moving data is left."""
    model = onnx.load(str(exported("alpha4_p5_adaptive_batch2", method).path))
    keep_float = set(float_node_names(model))
    assert any(f"/{COORDS_SCOPE}/" in name for name in keep_float)
    assert {n.op_type for n in model.graph.node if n.name.startswith(f"/{WEIGHTED_SUM_SCOPE}/")} == {"Mul", "ReduceSum"}
    data_ops = [node.op_type for node in model.graph.node if node.name not in keep_float]
    assert set(data_ops) <= ONNX_DATA_OPS | {SAMPLING_OPS[method]}
    assert data_ops.count(SAMPLING_OPS[method]) == 1
    # the map goes straight into data movement, never into arithmetic
    consumers = {node.op_type for node in model.graph.node if "input" in node.input}
    assert consumers <= {"Reshape", "Transpose", "Shape"}


@pytest.mark.parametrize("method", METHODS)
def test_float_scopes_keep_their_names_in_openvino(exported, method: str) -> None:
    """The pattern an nncf.IgnoredScope would use still finds every arithmetic op after OpenVINO's conversion."""
    import openvino as ov

    model = ov.Core().read_model(str(exported("alpha4_p5_adaptive_batch2", method).path))
    outside = {
        op.get_type_name()
        for op in model.get_ordered_ops()
        if not re.fullmatch(FLOAT_NODE_PATTERN, op.get_friendly_name())
    }
    assert outside == OPENVINO_DATA_OPS | {SAMPLING_OPS[method]}


@pytest.mark.parametrize("method", METHODS)
def test_function_and_from_module(method: str) -> None:
    case = CASES["alpha2_p3x2_sr2_batch2"]
    x, rois = make_inputs(case, seed=3, k=10)
    ps = PSRoIAlign(case.output_size, case.spatial_scale, case.sampling_ratio)
    replacement = PSRoIAlignExport.from_module(ps, method=method)
    assert replacement.geometry.output_size == ps.output_size and replacement.method == PSRoIAlignMethod(method)
    expected = ps(x, rois)
    torch.testing.assert_close(replacement(x, rois), expected, rtol=0, atol=TOLERANCE)
    functional = ps_roi_align_export(
        x, rois, case.output_size, case.spatial_scale, case.sampling_ratio, method=method
    )  # fmt: skip
    torch.testing.assert_close(functional, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method", METHODS)
def test_no_rois(method: str) -> None:
    x = torch.randn(1, 18, 5, 5)
    out = ps_roi_align_export(x, torch.zeros(0, 5), 3, 1.0, 2, method=method)
    assert out.shape == (0, 2, 3, 3)


def test_static_grid_too_small_is_refused() -> None:
    x = torch.randn(1, 9, 20, 20)
    rois = torch.tensor([[0.0, 0.0, 0.0, 19.0, 19.0]])  # needs ceil(19 / 3) = 7 samples per bin
    with pytest.raises(ValueError, match="max_grid"):
        ps_roi_align_export(x, rois, 3, 1.0, 0, max_grid=(4, 4))
    assert max_adaptive_grid((20, 20), 3, 1.0) == (7, 7)
    torch.testing.assert_close(
        ps_roi_align_export(x, rois, 3, 1.0, 0, max_grid=(7, 7)), ps_roi_align(x, rois, 3, 1.0, 0), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_zero_size_rois_pool_to_zero(exported, method: str, backend: str) -> None:
    """Adaptive sampling gives a zero-size RoI a 0 x 0 grid: torchvision's kernel then returns 0. (The pure-torch
    reference divides 0 by 0 there and fails, so the expected zeros are written out.)"""
    name = "alpha3_p2x3_adaptive"
    case = CASES[name]
    x, rois = make_inputs(case, seed=4, k=8)
    flat = torch.tensor([[0.0, 3.0, 2.0, 3.0, 6.0], [0.0, 1.0, 4.0, 5.0, 4.0], [0.0, 2.0, 2.0, 2.0, 2.0]])
    expected = ps_roi_align(x, rois, case.output_size, case.spatial_scale, case.sampling_ratio).numpy()
    expected = np.concatenate([expected, np.zeros((3, *expected.shape[1:]), np.float32)])
    actual = exported(name, method).run(backend, x, torch.cat([rois, flat]))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_float_pattern_matches_when_nested(tmp_path: Path) -> None:
    """Inside a model the scopes sit under the pooler's path, as in ``/roi_heads/pooler/ps_roi_align_coords/Mul``."""

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pooler = PSRoIAlignExport(3, 1 / 4, 2)

        def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
            return self.pooler(torch.relu(x), rois).flatten(1)

    case = CASES["alpha2_p3_sr1_batch3"]
    path = tmp_path / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Head(), make_inputs(case, seed=5, k=4), str(path), dynamo=False, opset_version=17)
    names = float_node_names(onnx.load(str(path)))
    assert names and all(
        name.startswith(("/pooler/ps_roi_align_coords/", "/pooler/ps_roi_align_weighted_sum/")) for name in names
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_fast_path_for_one_image_with_clipped_rois(tmp_path: Path, backend: str) -> None:
    """The detector graph's promise (one image, RoIs clipped to it) lets the pooler use a plain mean; still exact."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 490, 20, 24, generator=g)
    xy = torch.rand(40, 2, generator=g) * torch.tensor([384.0, 320.0])
    wh = torch.rand(40, 2, generator=g) * 160 + 0.5
    x2y2 = torch.minimum(xy + wh, torch.tensor([384.0, 320.0]))  # clipped to the 384x320 image
    rois = torch.cat([torch.zeros(40, 1), xy, x2y2], dim=1)
    module = PSRoIAlignExport(7, 1 / 16, 2, rois_inside_single_image=True)
    assert module.uniform and not PSRoIAlignExport(7, 1 / 16, -1, rois_inside_single_image=True).uniform
    exp = Exported(module, tmp_path / "uniform.onnx")
    torch.onnx.export(
        module,
        (x, rois[:3]),
        str(exp.path),
        dynamo=False,
        opset_version=17,
        input_names=["input", "rois"],
        output_names=["pooled"],
        dynamic_axes={"rois": {0: "num_rois"}},
    )
    ops = {node.op_type for node in onnx.load(str(exp.path)).graph.node}
    assert "ReduceMean" in ops and "ReduceSum" not in ops
    want = ps_roi_align(x, rois, 7, 1 / 16, 2).numpy()
    np.testing.assert_allclose(exp.run(backend, x, rois), want, atol=1e-4, rtol=0)
