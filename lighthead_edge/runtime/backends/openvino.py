"""OpenVINO backend: a compiled model with one request for ``run`` and an ``AsyncInferQueue`` for ``submit`` and
``run_many``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.backends import METADATA_SECTION, Callback, Hint, Outputs, decode_metadata, in_order
from lighthead_edge.runtime.isa import check_cap, kernel_isas


def _import_openvino():
    """``import openvino``, without its usage event. That import sends one (``openvino_telemetry``, whatever
    ``OPENVINO_TELEMETRY`` says) from a ``multiprocessing`` fork made on a worker thread, unless the user opted out.
    A fork of a process whose threads are running (the runner's capture threads) can deadlock in the child, which
    then also ignores the SIGTERM meant to end it (it inherited the runner's handler), and the parent waits for it at
    exit: a ``run`` on stdin that processed every frame and never exited (gst recipe test, 2026-12-02). A camera's
    runtime sends nothing home: telemetry declines when ``CI=true`` (its ``disable_in_ci``), set only for the
    import."""
    previous = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino
    finally:
        if previous is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = previous
    return openvino


ov = _import_openvino()

# Two compiled models whose first inferences ran at the same time on two threads deadlocked inside _pyopenvino (a
# C++ static initialiser's guard taken while holding the GIL; gdb in tests/embed_gst, 2 runs of 4 with a tee): each
# backend runs its first inference at load, one backend at a time.
_FIRST_INFERENCE = threading.Lock()


class OpenVINOBackend:
    """An OpenVINO IR (or ONNX file) compiled for ``device``.

    Args:
        model_path: the ``.xml`` of an IR.
        device: an OpenVINO device name, ``"CPU"`` by default.
        threads: ``INFERENCE_NUM_THREADS`` [default: OpenVINO's choice].
        hint: ``PERFORMANCE_HINT`` LATENCY or THROUGHPUT.
        jobs: requests in flight in :meth:`submit` / :meth:`run_many` [default: the compiled model's optimal
            number, at least 2, so that the next frame's input is ready when one finishes].

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
            model = core.read_model(str(model_path))
            self._metadata = _rt_info(model)
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            available = core.available_devices
            if device not in available:
                raise ConfigError(f"OpenVINO device {device!r} not found; available: {available}") from None
            raise ConfigError(f"OpenVINO can't compile {model_path} for {device}: {str(exc).splitlines()[0]}") from None
        self._request = self._compiled.create_infer_request()
        self._names = [out.get_any_name() for out in self._compiled.outputs]
        shape = self._compiled.input(0).get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in shape)
        if all(d > 0 for d in self.input_shape):
            with _FIRST_INFERENCE:  # see _FIRST_INFERENCE; also keeps the first frame's latency out of a stream
                self._request.infer({0: np.zeros(self.input_shape, dtype=np.uint8)})
        optimal = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.jobs = max(1, jobs or max(2, optimal))
        self._queue: ov.AsyncInferQueue | None = None

    def run(self, image: np.ndarray) -> Outputs:
        """image (ndarray[1, H, W, 3] uint8) -> outputs by name."""
        self._request.infer({0: image})
        return _outputs(self._request, self._names)

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]:
        """Outputs of every image, in order, with up to ``jobs`` requests in flight."""
        return in_order(self, images)

    def submit(self, image: np.ndarray, callback: Callback) -> None:
        """Start ``image`` on a free request of the queue (waiting for one); ``callback(outputs or exception)`` runs
        on an OpenVINO thread."""
        if self._queue is None:
            self._queue = ov.AsyncInferQueue(self._compiled, self.jobs)
            # The queue's callback must not hold ``self``: OpenVINO may free it on one of its own stream threads, and
            # if that dropped the last reference to this backend, the compiled model's executor would join the very
            # thread it runs on (std::system_error -> abort; seen in the test suite, gdb backtrace in the compression
            # issue). So it holds only the output names, and the user's callback travels as the request's userdata.
            names = self._names
            self._queue.set_callback(lambda request, user_callback: _deliver(request, names, user_callback))
        self._queue.start_async({0: image}, callback)

    def wait_all(self) -> None:
        """Wait until every submitted input has run and its callback returned."""
        if self._queue is not None:
            self._queue.wait_all()

    def kernel_isas(self) -> dict[str, int]:
        """The compiled graph's executed kernels counted by ISA: ``{"avx2": 161, "avx512": 12, ...}``."""
        return kernel_isas(self._compiled)

    def check_isa(self, isa: str) -> None:
        """Raise :class:`ConfigError` unless the ``--isa`` cap ``isa`` (set before loading) reached oneDNN's kernels."""
        check_cap(self._compiled, isa)

    def metadata(self) -> dict[str, object]:
        """The ``lighthead_edge`` section of the IR's ``rt_info``, decoded."""
        return dict(self._metadata)


def _rt_info(model: ov.Model) -> dict[str, object]:
    if not model.has_rt_info([METADATA_SECTION]):
        return {}
    keys = model.get_rt_info([METADATA_SECTION]).astype(dict)
    return decode_metadata({key: model.get_rt_info([METADATA_SECTION, key]).astype(str) for key in keys})


def _outputs(request: ov.InferRequest, names: list[str]) -> Outputs:
    # copies: a request's output tensors are overwritten by its next inference
    return {name: np.array(request.get_output_tensor(i).data) for i, name in enumerate(names)}


def _deliver(request: ov.InferRequest, names: list[str], callback: Callback) -> None:
    try:
        result: Outputs | BaseException = _outputs(request, names)
    except Exception as exc:  # noqa: BLE001 - handed to the callback
        result = exc
    callback(result)
