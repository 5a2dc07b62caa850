"""OpenVINO backend: a compiled model with one request for ``run`` and an ``AsyncInferQueue`` for ``run_many``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import openvino as ov

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.backends import Hint, Outputs, chunks


class OpenVINOBackend:
    """An OpenVINO IR (or ONNX file) compiled for ``device``.

    Args:
        model_path: the ``.xml`` of an IR.
        device: an OpenVINO device name, ``"CPU"`` by default.
        threads: ``INFERENCE_NUM_THREADS`` [default: OpenVINO's choice].
        hint: ``PERFORMANCE_HINT`` LATENCY or THROUGHPUT.
        jobs: requests in flight in :meth:`run_many` [default: the compiled model's optimal number].

    Note:
        On CPUs with bf16 support (AMX, AVX512-BF16) OpenVINO computes float layers in bf16 by default, which moves
        scores by ~1e-3 and can change which proposals survive. ``INFERENCE_PRECISION_HINT`` is pinned to f32 on CPU
        so that a bundle gives the same detections everywhere; quantized layers still run in int8.
    """

    def __init__(self, model_path: Path, *, device: str, threads: int | None, hint: Hint, jobs: int | None) -> None:
        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": hint.value.upper()}
        if device.upper() == "CPU":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(str(model_path), device, config)
        except RuntimeError as exc:
            available = core.available_devices
            if device not in available:
                raise ConfigError(f"OpenVINO device {device!r} not found; available: {available}") from None
            raise ConfigError(f"OpenVINO can't compile {model_path} for {device}: {str(exc).splitlines()[0]}") from None
        self.request = self.compiled.create_infer_request()
        self.output_names = [out.get_any_name() for out in self.compiled.outputs]
        self.jobs = jobs or int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def run(self, image: np.ndarray) -> Outputs:
        """image (ndarray[1, H, W, 3] uint8) -> outputs by name."""
        self.request.infer({0: image})
        return _outputs(self.request, self.output_names)

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]:
        """Outputs of every image, in order, with up to ``jobs`` requests in flight."""
        queue = ov.AsyncInferQueue(self.compiled, self.jobs)
        results: dict[int, Outputs] = {}
        names = self.output_names
        # The callback must not hold ``self``: OpenVINO may free it on one of its own stream threads, and if that
        # dropped the last reference to this backend, the compiled model's executor would join the very thread it
        # runs on (std::system_error -> abort; seen in the test suite, gdb backtrace in the compression issue).
        queue.set_callback(lambda request, index: results.__setitem__(index, _outputs(request, names)))
        for batch in chunks(images, 2 * self.jobs):
            for index, image in enumerate(batch):
                queue.start_async({0: image}, index)
            queue.wait_all()
            yield from (results.pop(index) for index in range(len(batch)))


def _outputs(request: ov.InferRequest, names: list[str]) -> Outputs:
    # copies: a request's output tensors are overwritten by its next inference
    return {name: np.array(request.get_output_tensor(i).data) for i, name in enumerate(names)}
