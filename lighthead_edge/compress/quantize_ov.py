"""INT8 post-training quantization for OpenVINO through NNCF, with an optional COCO-mAP accuracy control
(:func:`quantize_artifact`: ``nncf.quantize_with_accuracy_control`` ranking layers by COCO AP).

The FP32 IR of the bundle is read with ``ov.Core().read_model`` and quantized with ``nncf.quantize``. An
``nncf.IgnoredScope`` over :func:`~lighthead_edge.export.openvino.float_op_names` keeps the RoI coordinates, box
decoding, NMS and softmax in float. ``overflow_fix=ENABLE`` because this CPU has AVX2 without VNNI: NNCF then uses
7-bit weights in the layers that could saturate the int16 pair sums of ``vpmaddubsw`` (the 490-channel thin map went
from cosine 0.9906 to 0.9998 against FP32, see ../shared/ENVIRONMENT.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lighthead_edge.evaluate import ValSet


@dataclass(frozen=True)
class OvQuantSettings:
    """Settings of :func:`quantize_ir`.

    Attributes:
        preset: ``"performance"`` (symmetric activations: fastest on CPU) or ``"mixed"`` (asymmetric activations).
        overflow_fix: NNCF's AVX2 overflow fix, see the module docstring.
        fast_bias_correction: NNCF's cheap bias correction (the full one needs many more runs).
        exclude: extra op names to keep in float (besides the float scope), e.g. from ``quantize --keep-float``.
    """

    preset: str = "performance"
    overflow_fix: bool = True
    fast_bias_correction: bool = True
    exclude: tuple[str, ...] = ()


@dataclass
class OvQuantResult:
    """The written IR (.xml), the ignored (float) op names, and the layers accuracy control reverted to float."""

    path: Path
    ignored: list[str]
    kept_float: list[str] = field(default_factory=list)


@contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs every ignored op at INFO (hundreds of lines for the float scope); keep warnings only."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _nncf_args(model, calib: Sequence[np.ndarray], settings: OvQuantSettings) -> tuple[dict[str, Any], Any]:
    import nncf

    from lighthead_edge.export.openvino import float_op_names

    fix = nncf.OverflowFix.ENABLE if settings.overflow_fix else nncf.OverflowFix.DISABLE
    preset = nncf.QuantizationPreset(settings.preset)
    return {
        "calibration_dataset": nncf.Dataset(list(calib)),
        "preset": preset,
        "subset_size": len(calib),
        "fast_bias_correction": settings.fast_bias_correction,
        # validate=False: an ignored name that conversion folded away is not an error
        "ignored_scope": nncf.IgnoredScope(names=[*float_op_names(model), *settings.exclude], validate=False),
    }, nncf.AdvancedQuantizationParameters(overflow_fix=fix)


def quantize_ir(
    fp32_xml: str | Path, out_xml: str | Path, calib: Sequence[np.ndarray], settings: OvQuantSettings | None = None
) -> OvQuantResult:
    """Quantize the FP32 IR ``fp32_xml`` with the calibration inputs and save the INT8 IR ``out_xml`` (+ .bin)."""
    import nncf
    import openvino as ov

    s = settings or OvQuantSettings()
    model = ov.Core().read_model(str(fp32_xml))
    args, advanced = _nncf_args(model, calib, s)
    with _quiet_nncf():
        quantized = nncf.quantize(model, advanced_parameters=advanced, **args)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return OvQuantResult(Path(out_xml), list(args["ignored_scope"].names))


def quantize_ir_with_accuracy_control(
    fp32_xml: str | Path,
    out_xml: str | Path,
    calib: Sequence[np.ndarray],
    validation: Sequence[Any],
    validation_fn: Callable[[Any, Sequence[Any]], float],
    *,
    max_drop: float,
    to_input: Callable[[Any], Any] | None = None,
    settings: OvQuantSettings | None = None,
) -> OvQuantResult:
    """``nncf.quantize_with_accuracy_control``: revert the most sensitive layers to float until the metric of
    ``validation_fn(compiled_model, validation)`` drops by at most ``max_drop`` (absolute) against FP32.

    ``to_input`` maps a validation item to the model input (NNCF runs the model on it to rank layers).
    """
    import nncf
    import openvino as ov

    s = settings or OvQuantSettings()
    model = ov.Core().read_model(str(fp32_xml))
    args, advanced = _nncf_args(model, calib, s)
    with _quiet_nncf():
        quantized = nncf.quantize_with_accuracy_control(
            model, validation_dataset=nncf.Dataset(list(validation), to_input), validation_fn=validation_fn,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **args,
        )  # fmt: skip
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    # what stayed float *because of* accuracy control: INT8 in a plain quantization, not in this one (a diff, since
    # some ops never take a FakeQuantize directly, e.g. the fc behind a Reshape)
    plain_model = ov.Core().read_model(str(fp32_xml))
    with _quiet_nncf():
        plain = nncf.quantize(plain_model, advanced_parameters=advanced, **_nncf_args(plain_model, calib, s)[0])
    now = set(fake_quantized_ops(quantized))
    reverted = [name for name in fake_quantized_ops(plain) if name not in now]
    return OvQuantResult(Path(out_xml), list(args["ignored_scope"].names), reverted)


def quantizable_ops(model) -> list[str]:
    """Friendly names of the Convolution / GroupConvolution / MatMul ops outside the float scope."""
    from lighthead_edge.export.openvino import float_op_names

    floating = set(float_op_names(model))
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_type_name() in kinds and op.get_friendly_name() not in floating]  # fmt: skip


def fake_quantized_ops(model) -> list[str]:
    """Friendly names of the ops that take at least one input straight from a FakeQuantize (an INT8 op)."""
    names = []
    for op in model.get_ops():
        sources = [i.get_source_output().get_node() for i in op.inputs()]
        # weights may go through Convert/Multiply (compressed constants) before the FakeQuantize-free path
        if any(src.get_type_name() == "FakeQuantize" for src in sources):
            names.append(op.get_friendly_name())
    return names


def quantize_artifact(
    src: Path, dst: Path, calib: Sequence[np.ndarray], settings: OvQuantSettings, *, val: ValSet | None = None,
    max_drop: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A bundle's INT8 IR ``dst`` of ``src``; with ``max_drop``, ``nncf.quantize_with_accuracy_control`` on the COCO
    AP of ``val`` -> its report info (scheme, float scope, layers kept in float and why)."""
    scheme = f"NNCF {settings.preset} preset, overflow_fix {'on' if settings.overflow_fix else 'off'}"
    if max_drop is None:
        result = quantize_ir(src, dst, calib, settings)
        return {"scheme": scheme, "float_scope": _scope_count(result.ignored, settings.exclude), "kept_float": []}

    def validate(compiled, data) -> float:
        names = [o.get_any_name() for o in compiled.outputs]

        def run(image: np.ndarray) -> dict[str, np.ndarray]:
            values = compiled({0: image})
            return {name: values[i] for i, name in enumerate(names)}

        return val.ap(run, list(data))

    result = quantize_ir_with_accuracy_control(src, dst, calib, val.items, validate, max_drop=max_drop,
                                               to_input=lambda item: item.image, settings=settings)  # fmt: skip
    why = "reverted by nncf.quantize_with_accuracy_control (COCO AP ranking) to keep the drop within {}"
    kept = [{"name": n, "why": why.format(max_drop)} for n in result.kept_float]
    scope = _scope_count(result.ignored, settings.exclude)
    return {"scheme": scheme + ", accuracy control", "float_scope": scope, "kept_float": kept}


def _scope_count(ignored: Sequence[str], forced: Sequence[str]) -> int:
    """How many ops NNCF ignored because of the float scope, not because ``--keep-float`` named them."""
    return len(set(ignored) - set(forced))
