"""Inference engines behind :class:`~lighthead_edge.runtime.detector.Detector`: one small module per engine, each
imported only when it is used, so a device needs just the one it runs."""

from __future__ import annotations

import importlib.util
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.bundle import Backend

Outputs = dict[str, np.ndarray]  # output name -> array, e.g. "boxes" [1, D, 4]
Callback = Callable[["Outputs | BaseException"], None]


class Hint(str, Enum):
    """What to optimise for: one frame as soon as possible, or frames per second over many in flight."""

    LATENCY = "latency"
    THROUGHPUT = "throughput"


class InferenceBackend(Protocol):
    """A loaded model.

    - ``run`` one input and wait; ``run_many`` several with up to ``jobs`` in flight (outputs in input order);
    - ``submit`` one input to the engine's own queue of ``jobs`` requests (it blocks while all are busy); the
      ``callback`` later runs on an engine thread with the outputs (copies) or the exception. It must not hold the
      backend: OpenVINO releases the callback on its own thread, and dropping the last reference to the backend
      there aborts the process (see ``backends/openvino.py``). An input the engine refuses outright (OpenVINO: a
      wrong shape) raises from ``submit`` itself. ``wait_all`` waits for every submitted input;
    - ``input_shape``: the graph's input, (1, H, W, 3) uint8 NHWC (-1 for a dynamic dimension);
    - ``kernel_isas`` / ``check_isa``: what instruction set the kernels use (see :mod:`~lighthead_edge.runtime.isa`);
      ``{}`` and a no-op where the engine does not tell;
    - ``metadata``: the bundle metadata the exporter embedded in the model file (ONNX ``metadata_props``
      ``lighthead_edge.<key>``, OpenVINO ``rt_info`` section ``lighthead_edge``), decoded by :func:`decode_metadata`.
    """

    jobs: int
    input_shape: tuple[int, ...]

    def run(self, image: np.ndarray) -> Outputs: ...

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]: ...

    def submit(self, image: np.ndarray, callback: Callback) -> None: ...

    def wait_all(self) -> None: ...

    def kernel_isas(self) -> dict[str, int]: ...

    def check_isa(self, isa: str) -> None: ...

    def metadata(self) -> dict[str, object]: ...


METADATA_SECTION = "lighthead_edge"  # the exporters' key prefix (ONNX) and rt_info section (OpenVINO)


def decode_metadata(values: dict[str, str]) -> dict[str, object]:
    """``{key: JSON text}`` -> ``{key: value}``; a value that is not JSON becomes None (it matches nothing)."""
    decoded: dict[str, object] = {}
    for key, text in values.items():
        try:
            decoded[key] = json.loads(text)
        except (TypeError, ValueError):
            decoded[key] = None
    return decoded


def installed_backends() -> list[Backend]:
    """The importable engines, OpenVINO first (a device installs one: ``.[openvino]`` or ``.[onnxruntime]``)."""
    return [b for b in (Backend.OPENVINO, Backend.ONNXRUNTIME) if _importable(b.value)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a half-removed package
        return False


def default_backend() -> Backend:
    """OpenVINO if it is installed, else ONNX Runtime; a :class:`ConfigError` if neither is."""
    found = installed_backends()
    if not found:
        raise ConfigError("no inference engine is installed: pip install 'lighthead-edge[openvino]' (or "
                          "'lighthead-edge[onnxruntime]')")  # fmt: skip
    return found[0]


def make_backend(
    backend: Backend, model_path: Path, *, device: str, threads: int | None, hint: Hint, jobs: int | None
) -> InferenceBackend:
    """Load ``model_path`` with ``backend``, importing only that engine (a :class:`ConfigError` if it is not
    installed)."""
    if not _importable(backend.value):
        others = [b.value for b in installed_backends()]
        instead = f", or use --backend {others[0]}" if others else ""
        raise ConfigError(f"{backend.value} is not installed here: pip install 'lighthead-edge[{backend.value}]'"
                          f"{instead}")  # fmt: skip
    if backend is Backend.ONNXRUNTIME:
        from lighthead_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, device=device, threads=threads, hint=hint, jobs=jobs)
    from lighthead_edge.runtime.backends.openvino import OpenVINOBackend

    return OpenVINOBackend(model_path, device=device, threads=threads, hint=hint, jobs=jobs)


def future_callback(future: Future) -> Callback:
    """A ``submit`` callback that settles ``future`` (and holds nothing else)."""

    def settle(result: Outputs | BaseException) -> None:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    return settle


def in_order(backend: InferenceBackend, images: Iterable[np.ndarray]) -> Iterator[Outputs]:
    """``run_many`` for any backend: the outputs of every image, in order, through ``submit``; at most
    ``2 * jobs`` inputs are pulled ahead of the outputs yielded."""
    pending: deque[Future] = deque()
    for image in images:
        future: Future = Future()
        backend.submit(image, future_callback(future))
        pending.append(future)
        if len(pending) >= 2 * backend.jobs:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
