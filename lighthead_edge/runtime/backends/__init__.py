"""Inference engines behind :class:`~lighthead_edge.runtime.detector.Detector`: one small module per engine, each
imported only when it is used, so a device needs just the one it runs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from lighthead_edge.runtime.bundle import Backend

Outputs = dict[str, np.ndarray]  # output name -> array, e.g. "boxes" [1, D, 4]


class Hint(str, Enum):
    """What to optimise for: one frame as soon as possible, or frames per second over many in flight."""

    LATENCY = "latency"
    THROUGHPUT = "throughput"


class InferenceBackend(Protocol):
    """A loaded model: ``run`` one input, or ``run_many`` with several requests in flight (outputs in input order)."""

    jobs: int

    def run(self, image: np.ndarray) -> Outputs: ...

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]: ...


def make_backend(
    backend: Backend, model_path: Path, *, device: str, threads: int | None, hint: Hint, jobs: int | None
) -> InferenceBackend:
    """Load ``model_path`` with ``backend``, importing only that engine."""
    if backend is Backend.ONNXRUNTIME:
        from lighthead_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, device=device, threads=threads, hint=hint, jobs=jobs)
    from lighthead_edge.runtime.backends.openvino import OpenVINOBackend

    return OpenVINOBackend(model_path, device=device, threads=threads, hint=hint, jobs=jobs)


def chunks(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive lists of at most ``size`` items: keeps a bounded number of frames in flight."""
    batch: list[np.ndarray] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
