"""onnxruntime backend: one ``InferenceSession`` on the CPU execution provider; concurrency from a thread pool
(``session.run`` releases the GIL and is safe to call from several threads)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.backends import METADATA_SECTION, Callback, Hint, Outputs, decode_metadata, in_order


class OnnxRuntimeBackend:
    """An ONNX model in onnxruntime.

    Args:
        model_path: the ``.onnx`` file.
        device: only ``"CPU"``: the runtime extra installs the CPU build.
        threads: intra-op threads per request [default: onnxruntime's, all cores; 1 with the throughput hint].
        hint: ``throughput`` runs one single-threaded request per core in :meth:`run_many`.
        jobs: requests in flight in :meth:`submit` / :meth:`run_many` [default: 2, or the core count with the
            throughput hint].
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
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in first.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        cores = os.cpu_count() or 1
        self.jobs = max(1, jobs or (cores if hint is Hint.THROUGHPUT else 2))
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(self.jobs)
        self._idle = threading.Condition()
        self._in_flight = 0

    def run(self, image: np.ndarray) -> Outputs:
        """image (ndarray[1, H, W, 3] uint8) -> outputs by name."""
        values = self.session.run(self.output_names, {self.input_name: image})
        return dict(zip(self.output_names, values, strict=True))

    def run_many(self, images: Iterable[np.ndarray]) -> Iterator[Outputs]:
        """Outputs of every image, in order, with up to ``jobs`` requests running at once."""
        return in_order(self, images)

    def submit(self, image: np.ndarray, callback: Callback) -> None:
        """Run ``image`` on a pool thread, then ``callback(outputs or exception)`` there; blocks while ``jobs``
        requests are running."""
        self._slots.acquire()
        with self._idle:
            self._in_flight += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="lighthead-ort")
        self._pool.submit(self._job, image, callback)

    def _job(self, image: np.ndarray, callback: Callback) -> None:
        try:
            result: Outputs | BaseException = self.run(image)
        except Exception as exc:  # noqa: BLE001 - handed to the callback
            result = exc
        self._slots.release()  # before the callback, which may submit the next input
        try:
            callback(result)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_all(self) -> None:
        """Wait until every submitted input has run and its callback returned."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0)

    def kernel_isas(self) -> dict[str, int]:
        """{}: onnxruntime's MLAS kernels do not say which ISA they run."""
        return {}

    def check_isa(self, isa: str) -> None:
        """Nothing to check: onnxruntime has no ISA cap (see :mod:`~lighthead_edge.runtime.isa`)."""

    def metadata(self) -> dict[str, object]:
        """The ``lighthead_edge.<key>`` entries of the model's ``metadata_props``, decoded."""
        prefix = METADATA_SECTION + "."
        custom = self.session.get_modelmeta().custom_metadata_map
        return decode_metadata({k[len(prefix) :]: v for k, v in custom.items() if k.startswith(prefix)})
