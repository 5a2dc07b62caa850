"""The video pipeline: capture, preprocessing, inference, postprocessing and output overlap in time.

::

    capture thread --FrameQueue--> submit thread --(nireq in flight)--> complete thread --results--> your loop
       source.read()                 letterbox, start_async                wait (in order), postprocess

- Live sources (camera, stream, stdin): the :class:`FrameQueue` holds one frame and a newer one replaces it, so
  inference always starts on the newest frame; replaced frames are counted as dropped.
- File sources (video, images): the queue is a bounded FIFO that blocks the reader, so every frame is processed,
  in order.
- Inference keeps ``nireq`` requests in flight on the backend's own queue (``submit``: an OpenVINO
  ``AsyncInferQueue``, or a thread pool around onnxruntime, whose ``run`` releases the GIL). Results come out in
  frame order.

Embedding::

    from lighthead_edge.runtime import Detector
    from lighthead_edge.runtime.pipeline import Pipeline, run
    from lighthead_edge.runtime.sources import SourceSpec, open_source

    for frame, detections in run("bundle/", "rtsp://cam/stream", reconnect=True):
        ...  # frame: ndarray[h, w, 3] BGR; detections.boxes in its pixels

    with Pipeline(Detector("bundle/"), open_source(SourceSpec.guess("clip.mp4"))) as pipe:
        for result in pipe:  # FrameResult(frame, detections, meta): meta.index, meta.timestamp, meta.latency_ms
            ...
        print(pipe.summary().format())
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.backends import Outputs
from lighthead_edge.runtime.detector import Detections, Detector
from lighthead_edge.runtime.sources import Frame, Source, SourceSpec, open_source
from lighthead_edge.runtime.stats import RunStats, Summary

_END = object()  # end-of-stream marker passed down the queues
_POLL_S = 0.2  # how often blocked hand-overs look at the stop flag


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000.0


@dataclass(frozen=True)
class FrameMeta:
    """Where a result comes from and what it cost.

    Attributes:
        index: the frame's number among the frames read from the source (0-based; gaps are dropped frames).
        timestamp: seconds; media time for video files, Unix time of capture otherwise.
        read_at: ``time.perf_counter()`` when the frame had been read.
        preprocess_ms, infer_ms, postprocess_ms: stage times; latency_ms: read -> detections ready.
    """

    index: int
    timestamp: float
    read_at: float
    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float
    latency_ms: float


class FrameResult(NamedTuple):
    """A processed frame: the original image (ndarray[h, w, 3] BGR), its detections and :class:`FrameMeta`."""

    frame: np.ndarray
    detections: Detections
    meta: FrameMeta


@dataclass(frozen=True)
class _Captured:
    index: int
    frame: Frame
    read_at: float


class FrameQueue:
    """The hand-over from capture to inference.

    ``latest=True``: one slot; a new frame replaces an unconsumed one (counted dropped): live sources.
    ``latest=False``: a FIFO of ``maxsize`` whose ``put`` waits for room: file sources.
    After :meth:`close` ``get`` returns what is left and then ``_END``; ``close(discard=True)`` drops the rest.
    """

    def __init__(self, *, latest: bool, maxsize: int = 4) -> None:
        self.latest, self.maxsize = latest, 1 if latest else max(1, maxsize)
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any) -> int:
        """Queue ``item``; returns how many frames were dropped for it (the one replaced, or ``item`` if closed)."""
        with self._cond:
            while not self.latest and len(self._items) >= self.maxsize and not self._closed:
                self._cond.wait(_POLL_S)
            if self._closed:
                return 1
            dropped = 0
            if self.latest and self._items:
                self._items.popleft()
                dropped = 1
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self) -> Any:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(_POLL_S)
            item = self._items.popleft() if self._items else _END
            self._cond.notify_all()
            return item

    def close(self, *, discard: bool = False) -> int:
        """No more puts; with ``discard``, drop what is queued. Returns how many were dropped."""
        with self._cond:
            self._closed = True
            dropped = len(self._items) if discard else 0
            if discard:
                self._items.clear()
            self._cond.notify_all()
            return dropped


class AsyncEngine:
    """A :class:`Detector`'s requests in flight: ``submit(input) -> Future[(outputs, t_done)]``, on the backend's own
    queue (:meth:`InferenceBackend.submit`), which holds its ``jobs`` requests (``nireq``: at most that many)."""

    def __init__(self, detector: Detector, nireq: int | None = None) -> None:
        self._backend = detector.engine
        self.nireq = max(1, min(nireq or self._backend.jobs, self._backend.jobs))

    def submit(self, image: np.ndarray) -> Future:
        future: Future = Future()
        self._backend.submit(image, partial(_settle, future))
        return future

    def close(self) -> None:
        self._backend.wait_all()


def _settle(future: Future, result: Outputs | BaseException) -> None:
    # module-level, holding only the future: the backend's callback must not hold the backend
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result((result, time.perf_counter()))


class Pipeline:
    """Detections of every frame of ``source``, with the stages overlapped (see the module docstring).

    Args:
        detector: a loaded :class:`Detector`.
        source: a :class:`Source`; :meth:`start` opens it unless it is open.
        nireq: inference requests in flight [default and at most: the detector's ``jobs``; build the
            :class:`Detector` with ``jobs=`` for more].
        drop: keep only the newest frame [default: ``source.live``].
        max_frames: stop after reading this many frames.
        duration: stop after this many seconds.
        queue_size: frames buffered between stages [default: nireq + 2].

    Iterate it (in one thread) for :class:`FrameResult` s in frame order; :meth:`stop` (from any thread or a signal
    handler) ends the run after the frames in flight, :meth:`close` (or leaving the ``with``) releases everything.
    """

    def __init__(
        self, detector: Detector, source: Source, *, nireq: int | None = None, drop: bool | None = None,
        max_frames: int | None = None, duration: float | None = None, queue_size: int | None = None,
    ) -> None:  # fmt: skip
        if nireq is not None and nireq < 1 or max_frames is not None and max_frames < 0:
            raise ConfigError("--nireq must be >= 1 and --max-frames >= 0")
        self.detector, self.source = detector, source
        self.nireq = min(nireq or detector.engine.jobs, detector.engine.jobs)
        self.drop = source.live if drop is None else drop
        self.max_frames, self.duration = max_frames, duration
        self.stats = RunStats()
        size = queue_size or self.nireq + 2
        self._inputs = FrameQueue(latest=self.drop, maxsize=size)
        self._pending: queue.Queue = queue.Queue()  # bounded by the nireq semaphore
        self._results: queue.Queue = queue.Queue(maxsize=size)
        self._stop, self._closed = threading.Event(), threading.Event()
        self._slots = threading.Semaphore(self.nireq)
        self._threads: dict[str, threading.Thread] = {}
        self._timer: threading.Timer | None = None
        self._engine: AsyncEngine | None = None
        self._error: BaseException | None = None
        self._finished = False  # the consumer has seen the end of the stream
        self.stopped_by: str | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> Pipeline:
        """Open the source unless it is open (raising its :class:`SourceError` here) and start the stage threads;
        idempotent."""
        if self._threads:
            return self
        if not self.source.is_open:
            self.source.open()
        self._engine = AsyncEngine(self.detector, self.nireq)
        # The first inference of a compiled model is slow (lazy kernel set-up): do it before the clock starts,
        # and before the first real frame, whose latency would otherwise show it.
        h, w = self.detector.input_size
        self._engine.submit(np.zeros((1, h, w, 3), np.uint8)).result()
        self.stats.restart()
        for name, target in (("capture", self._capture), ("submit", self._submit), ("complete", self._complete)):
            self._threads[name] = threading.Thread(target=target, name=f"lighthead-{name}", daemon=True)
            self._threads[name].start()
        if self.duration is not None:
            self._timer = threading.Timer(self.duration, self.stop, ("duration",))
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self, reason: str = "stop") -> None:
        """Read no more frames; the ones in flight still come out. Safe from any thread."""
        if not self._stop.is_set():
            self.stopped_by = self.stopped_by or reason
        self._stop.set()
        self.source.interrupt()
        self.stats.add_dropped(self._inputs.close(discard=True))

    def close(self) -> None:
        """Stop, wait for the stage threads, and release the engine and the source."""
        if self._finished:
            self._stop.set()
            self.source.interrupt()
        else:
            self.stop("close")  # the consumer left before the end
        self._closed.set()
        if self._timer is not None:
            self._timer.cancel()
        for name in ("submit", "complete"):
            if name in self._threads:
                self._threads[name].join()
        capture = self._threads.get("capture")
        if capture is not None:
            capture.join(timeout=6.0)  # a stalled stream read times out after 5 s; stdin may block for ever
        if self._engine is not None:
            self._engine.close()
        if capture is None or not capture.is_alive():
            self.source.close()  # never under a read still running in the capture thread
        self.stats.finish()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self, settings: dict[str, Any] | None = None) -> Summary:
        """Counters and stage latencies so far (see :class:`~lighthead_edge.runtime.stats.Summary`)."""
        return self.stats.summary(self.stopped_by, settings)

    # --------------------------------------------------------------------------------------------------- stages
    def _fail(self, exc: BaseException) -> None:
        self._error = self._error or exc
        self.stop("error")

    def _sync_counters(self) -> None:
        self.stats.set_source_counters(self.source.corrupt, self.source.missing, self.source.reconnects)

    def _capture(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    self.stopped_by = self.stopped_by or "max-frames"
                    break
                start = time.perf_counter()
                frame = self.source.read()
                read_at = time.perf_counter()
                self._sync_counters()
                if frame is None:
                    break
                self.stats.add_read(_ms(start, read_at))
                self.stats.add_dropped(self._inputs.put(_Captured(index, frame, read_at)))
                index += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            # the frames already read are still processed; the error is raised after them
            self._error = self._error or exc
            self.stopped_by = self.stopped_by or "error"
        finally:
            self._sync_counters()
            self._inputs.close()

    def _submit(self) -> None:
        try:
            while True:
                # a free request first, then the frame: on a live source that is the newest one at that moment
                while not self._slots.acquire(timeout=_POLL_S):
                    if self._closed.is_set() and self._error is not None:
                        return
                item = self._inputs.get()
                if item is _END:
                    self._slots.release()
                    return
                start = time.perf_counter()
                prepared = self.detector.preprocess(item.frame.image)
                submitted = time.perf_counter()
                self._pending.put((item, prepared, self._engine.submit(prepared.input), start, submitted))
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._pending.put(_END)

    def _complete(self) -> None:
        try:
            while (entry := self._pending.get()) is not _END:
                item, prepared, future, start, submitted = entry
                try:
                    outputs, done = future.result()
                finally:
                    self._slots.release()
                post_start = time.perf_counter()
                detections = self.detector.postprocess(outputs, prepared)
                ready = time.perf_counter()
                meta = FrameMeta(item.index, item.frame.timestamp, item.read_at, _ms(start, submitted),
                                 _ms(submitted, done), _ms(post_start, ready), _ms(item.read_at, ready))  # fmt: skip
                self.stats.add_processed(meta.preprocess_ms, meta.infer_ms, meta.postprocess_ms, meta.latency_ms)
                self._emit(FrameResult(item.frame.image, detections, meta))
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self.stats.finish()
            self._emit(_END)

    def _emit(self, item: Any) -> None:
        while not self._closed.is_set():
            try:
                self._results.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    # ---------------------------------------------------------------------------------------------- consumption
    def __iter__(self) -> Iterator[FrameResult]:
        self.start()
        try:
            while True:
                try:
                    item = self._results.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    self._finished = True
                    break
                yield item
            if self._error is not None:
                raise self._error
        finally:
            self.close()


def run(
    bundle: str | Path | Detector, source: str | int | Path | Source, *, backend: str = "openvino",
    device: str = "CPU", threads: int | None = None, precision: str | None = None, hint: str = "latency",
    nireq: int | None = None, drop: bool | None = None, max_frames: int | None = None, duration: float | None = None,
    **source_options: Any,
) -> Iterator[tuple[np.ndarray, Detections]]:  # fmt: skip
    """``(frame, detections)`` for every processed frame of ``source``: the simplest way to embed the runner.

    ``source`` is a :class:`Source`, or a camera index, URL, image folder or video path (``source_options`` such as
    ``loop=True``, ``reconnect=True``, ``width=1280`` go to :class:`SourceSpec`). Leaving the loop early stops
    the pipeline and releases the source.
    """
    detector = bundle if isinstance(bundle, Detector) else Detector(
        bundle, backend, device, threads, precision, hint=hint, jobs=nireq
    )  # fmt: skip
    if not isinstance(source, Source):
        source = open_source(SourceSpec.guess(source, **source_options))
    pipeline = Pipeline(detector, source, nireq=nireq, drop=drop, max_frames=max_frames, duration=duration)
    for result in pipeline:
        yield result.frame, result.detections
