"""onnxruntime backend: one ``InferenceSession`` on the CPU execution provider; concurrency from a thread pool
(``session.run`` releases the GIL and is safe to call from several threads)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.backends import Hint, Outputs, chunks


class OnnxRuntimeBackend:
    """An ONNX model in onnxruntime.

    Args:
        model_path: the ``.onnx`` file.
        device: only ``"CPU"``: the runtime extra installs the CPU build.
        threads: intra-op threads per request [default: onnxruntime's, all cores; 1 with the throughput hint].
        hint: ``throughput`` runs one single-threaded request per core in :meth:`run_many`.
        jobs: requests in flight in :meth:`run_many` [default: 2, or the core count with the throughput hint].
    """

    def __init__(self, model_path: Path, *, device: str, threads: int | None, hint: Hint, jobs: int | None) -> None:
        if device.upper() != "CPU":
            raise ConfigError(f"the onnxruntime backend runs on CPU here, not {device!r}; use --device CPU")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1  # the graph is one chain; inter-op threads would only compete
        if threads or hint is Hint.THROUGHPUT:
            options.intra_op_num_threads = threads or 1
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers and similar trivia
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        cores = os.cpu_count() or 1
        self.jobs = jobs or (cores if hint is Hint.THROUGHPUT else 2)

    def run(self, image: np.ndarray) -> Outputs:
        """image (ndarray[1, H, W, 3] uint8) -> outputs by name."""
        values = self.session.run(self.output_names, {self.input_name: image})
        return dict(zip(self.output_names, values, strict=True))

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]:
        """Outputs of every image, in order, with up to ``jobs`` requests running at once."""
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for batch in chunks(images, 2 * self.jobs):
                yield from pool.map(self.run, batch)
