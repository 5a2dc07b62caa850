"""The video pipeline: capture, preprocessing, inference, postprocessing and output overlap in time.

::

    capture thread --FrameQueue--> submit thread --(nireq in flight)--> complete thread --results--> your loop
       source.read()                 letterbox, start_async                wait (in order), postprocess

- Live sources (camera, stream, stdin): the :class:`FrameQueue` holds one frame and a newer one replaces it;
  replaced frames are counted as dropped. The submit thread letterboxes the next frame while every request is busy
  and submits it when one frees (the engine never waits for the host's letterbox), so a live frame is at most one
  inference interval old when its inference starts; nothing else queues.
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
from collections.abc import Callable, Iterator, Sequence
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
from lighthead_edge.runtime.stats import SOURCE_COUNTERS, RunStats, Summary

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
        source: the name of the source it came from (see :class:`Pipeline`'s ``names``).
    """

    index: int
    timestamp: float
    read_at: float
    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float
    latency_ms: float
    source: str = ""


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

    def __init__(self, *, latest: bool, maxsize: int = 4, on_change: Callable[[], None] | None = None) -> None:
        self.latest, self.maxsize = latest, 1 if latest else max(1, maxsize)
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_change = on_change  # called (outside the lock) after every put and close: a consumer of many

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
        if self._on_change is not None:
            self._on_change()
        return dropped

    def get(self) -> Any:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(_POLL_S)
            item = self._items.popleft() if self._items else _END
            self._cond.notify_all()
            return item

    def poll(self) -> Any:
        """The next item without waiting: None when there is none yet, ``_END`` once closed and empty."""
        with self._cond:
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return _END if self._closed else None

    def close(self, *, discard: bool = False) -> int:
        """No more puts; with ``discard``, drop what is queued. Returns how many were dropped."""
        with self._cond:
            self._closed = True
            dropped = len(self._items) if discard else 0
            if discard:
                self._items.clear()
            self._cond.notify_all()
        if self._on_change is not None:
            self._on_change()
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


class _Stream:
    """One source of a :class:`Pipeline`: its capture thread, its hand-over queue, its frame counter and its stats."""

    def __init__(self, name: str, source: Source, *, drop: bool, maxsize: int, notify: Any) -> None:
        self.name, self.source, self.drop = name, source, drop
        self.queue = FrameQueue(latest=drop, maxsize=maxsize, on_change=notify)
        self.stats = RunStats()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stopped_by: str | None = None

    def sync_counters(self) -> None:
        self.stats.set_source_counters(**source_counters(self.source))


def source_counters(source: Source) -> dict[str, float]:
    """A source's event counters (:data:`~lighthead_edge.runtime.stats.SOURCE_COUNTERS`), 0 where it has none."""
    return {name: getattr(source, name, 0) for name in SOURCE_COUNTERS}


class Pipeline:
    """Detections of every frame of one or several sources, with the stages overlapped (see the module docstring).

    Args:
        detector: a loaded :class:`Detector`: one compiled model serves every source.
        source: a :class:`Source`, or a sequence of them (one capture thread each); :meth:`start` opens each one
            that is not open.
        names: what to call each source in results (``meta.source``), stats and output names [default: ``source.name``].
        nireq: inference requests in flight [default and at most: the detector's ``jobs``; build the
            :class:`Detector` with ``jobs=`` for more].
        drop: keep only the newest frame of each source [default: per source, ``source.live``].
        max_frames: stop reading a source after this many frames.
        duration: stop after this many seconds.
        queue_size: frames buffered between stages [default: nireq + 2].

    Iterate it (in one thread) for :class:`FrameResult` s, each source's in frame order; :meth:`stop` (from any
    thread or a signal handler) ends the run after the frames in flight, :meth:`close` (or leaving the ``with``)
    releases everything. With several sources, the engine takes the sources' newest frames in turn (round robin over
    the sources that have one), so live sources share it fairly; a source that stalls or reconnects does so on its
    own capture thread and holds back no other. A source that fails ends alone (its error is logged by the caller
    from :attr:`failed`); the run fails only when every source failed.
    """

    def __init__(
        self, detector: Detector, source: Source | Sequence[Source], *, names: Sequence[str] | None = None,
        nireq: int | None = None, drop: bool | None = None, max_frames: int | None = None,
        duration: float | None = None, queue_size: int | None = None,
    ) -> None:  # fmt: skip
        if nireq is not None and nireq < 1 or max_frames is not None and max_frames < 0:
            raise ConfigError("--nireq must be >= 1 and --max-frames >= 0")
        sources = [source] if isinstance(source, Source) else list(source)
        if not sources:
            raise ConfigError("a pipeline needs at least one source")
        names = list(names) if names is not None else [s.name for s in sources]
        if len(names) != len(sources) or len(set(names)) != len(names):
            raise ConfigError(f"one distinct name per source, got {names}")
        self.detector = detector
        self.nireq = min(nireq or detector.engine.jobs, detector.engine.jobs)
        self.max_frames, self.duration = max_frames, duration
        self.stats = RunStats()  # every source together
        size = queue_size or self.nireq + 2
        self._ready = threading.Condition()
        self._changes = 0  # bumped on every put/close of a stream queue, under _ready
        self.streams = [_Stream(name, src, drop=src.live if drop is None else drop, maxsize=size, notify=self._notify)
                        for name, src in zip(names, sources, strict=True)]  # fmt: skip
        self._turn = 0  # round robin: the stream asked first for the next frame
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

    @property
    def source(self) -> Source:
        """The first source (the only one of a single-source run)."""
        return self.streams[0].source

    @property
    def sources(self) -> list[Source]:
        return [stream.source for stream in self.streams]

    @property
    def drop(self) -> bool:
        """Whether stale frames are dropped (of the first source; see each stream's ``drop``)."""
        return self.streams[0].drop

    @property
    def failed(self) -> dict[str, BaseException]:
        """The sources that ended with an error, by name."""
        return {s.name: s.error for s in self.streams if s.error is not None}

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> Pipeline:
        """Open every source that is not open (raising the first :class:`SourceError` here) and start the stage
        threads; idempotent."""
        if self._threads:
            return self
        for stream in self.streams:
            if not stream.source.is_open:
                stream.source.open()
        self._engine = AsyncEngine(self.detector, self.nireq)
        # The first inference of a compiled model is slow (lazy kernel set-up): do it before the clock starts,
        # and before the first real frame, whose latency would otherwise show it.
        self._engine.submit(np.zeros(self.detector.engine.input_shape, np.uint8)).result()
        self.stats.restart()
        for stream in self.streams:
            stream.stats.restart()
            stream.thread = threading.Thread(target=self._capture, args=(stream,), daemon=True,
                                             name=f"lighthead-capture-{stream.name}")  # fmt: skip
            stream.thread.start()
        for name, target in (("submit", self._submit), ("complete", self._complete)):
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
        for stream in self.streams:
            stream.source.interrupt()
            dropped = stream.queue.close(discard=True)
            stream.stats.add_dropped(dropped)
            self.stats.add_dropped(dropped)

    def close(self) -> None:
        """Stop, wait for the stage threads, and release the engine and the sources."""
        if self._finished:
            self._stop.set()
            for stream in self.streams:
                stream.source.interrupt()
        else:
            self.stop("close")  # the consumer left before the end
        self._closed.set()
        if self._timer is not None:
            self._timer.cancel()
        for name in ("submit", "complete"):
            if name in self._threads:
                self._threads[name].join()
        deadline = time.monotonic() + 6.0  # a stalled stream read times out after 5 s; stdin may block for ever
        for stream in self.streams:
            if stream.thread is not None:
                stream.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._engine is not None:
            self._engine.close()
        for stream in self.streams:
            if stream.thread is None or not stream.thread.is_alive():
                stream.source.close()  # never under a read still running in the capture thread
            stream.stats.finish()
        self.stats.finish()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self, settings: dict[str, Any] | None = None) -> Summary:
        """Counters and stage latencies so far (see :class:`~lighthead_edge.runtime.stats.Summary`); with several
        sources, each one's own summary is in ``streams``."""
        self._sync_counters()
        summary = self.stats.summary(self.stopped_by, settings)
        if len(self.streams) > 1:
            summary.streams = {s.name: s.stats.summary(s.stopped_by, {"source": s.source.name}).to_dict()
                               for s in self.streams}  # fmt: skip
            summary.failed = {name: str(error) for name, error in self.failed.items()}
        return summary

    # --------------------------------------------------------------------------------------------------- stages
    def _notify(self) -> None:
        with self._ready:
            self._changes += 1
            self._ready.notify_all()

    def _fail(self, exc: BaseException) -> None:
        self._error = self._error or exc
        self.stop("error")

    def window_line(self) -> str:
        """The periodic stats line (:meth:`RunStats.window_line` of all sources together)."""
        self._sync_counters()
        return self.stats.window_line()

    def _sync_counters(self) -> None:
        totals = {name: 0 for name in SOURCE_COUNTERS}
        for stream in self.streams:
            stream.sync_counters()
            for name, value in source_counters(stream.source).items():
                totals[name] += value
        self.stats.set_source_counters(**totals)

    def _capture(self, stream: _Stream) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    stream.stopped_by = "max-frames"
                    break
                start = time.perf_counter()
                frame = stream.source.read()
                read_at = time.perf_counter()
                stream.sync_counters()  # this source's own; the totals are summed when read (window_line, summary)
                if frame is None:
                    break
                for stats in (stream.stats, self.stats):
                    stats.add_read(_ms(start, read_at))
                dropped = stream.queue.put(_Captured(index, frame, read_at))
                stream.stats.add_dropped(dropped)
                self.stats.add_dropped(dropped)
                index += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            # the frames already read are still processed; the error is raised after them (or, while other
            # sources go on, reported by whoever reads `failed`)
            stream.error, stream.stopped_by = exc, "error"
        finally:
            self._sync_counters()
            stream.queue.close()
            if all(s.stopped_by == "max-frames" for s in self.streams):
                self.stopped_by = self.stopped_by or "max-frames"

    def _next_frame(self) -> tuple[_Stream, Any] | object:
        """The next stream's frame in round-robin order among the streams that have one (waiting for one), or
        ``_END`` once every stream has ended and been drained."""
        while True:
            with self._ready:
                seen = self._changes
            open_streams = 0
            n = len(self.streams)
            for k in range(n):
                stream = self.streams[(self._turn + k) % n]
                item = stream.queue.poll()
                if item is _END:
                    continue
                open_streams += 1
                if item is not None:
                    self._turn = (self._turn + k + 1) % n
                    return stream, item
            if not open_streams:
                return _END
            with self._ready:
                if self._changes == seen:
                    self._ready.wait(_POLL_S)

    def _submit(self) -> None:
        try:
            while True:
                # The next frame is letterboxed while the engine is still busy, then waits for a free request: a
                # request that frees starts at once instead of after the letterbox (1-3 ms a frame, during which
                # an engine stream idled: 8-10% of the throughput at 640x480 on 2 cores). A live frame is at most
                # one inference interval older for it; nothing else queues.
                found = self._next_frame()
                if found is _END:
                    return
                stream, item = found
                start = time.perf_counter()
                prepared = self.detector.preprocess(item.frame.image)
                prepped = time.perf_counter()
                while not self._slots.acquire(timeout=_POLL_S):
                    if self._closed.is_set() and self._error is not None:
                        return
                submitted = time.perf_counter()
                future = self._engine.submit(prepared.input)
                self._pending.put((stream, item, prepared, future, start, prepped, submitted))
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._pending.put(_END)

    def _complete(self) -> None:
        try:
            while (entry := self._pending.get()) is not _END:
                stream, item, prepared, future, start, prepped, submitted = entry
                try:
                    outputs, done = future.result()
                finally:
                    self._slots.release()
                post_start = time.perf_counter()
                detections = self.detector.postprocess(outputs, prepared)
                ready = time.perf_counter()
                meta = FrameMeta(item.index, item.frame.timestamp, item.read_at, _ms(start, prepped),
                                 _ms(submitted, done), _ms(post_start, ready), _ms(item.read_at, ready),
                                 stream.name)  # fmt: skip
                for stats in (stream.stats, self.stats):
                    stats.add_processed(meta.preprocess_ms, meta.infer_ms, meta.postprocess_ms, meta.latency_ms)
                self._emit(FrameResult(item.frame.image, detections, meta))
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            errors = [s.error for s in self.streams if s.error is not None]
            if errors and len(errors) == len(self.streams):  # every source failed: the run did
                self._error = self._error or errors[0]
                self.stopped_by = self.stopped_by or "error"
            for stream in self.streams:
                stream.stats.finish()
            self.stats.finish()
            self._emit(_END)

    def _emit(self, item: Any) -> None:
        while not self._closed.is_set():
            try:
                self._results.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def add_output(self, result: FrameResult, ms: float) -> None:
        """Record the output stage (drawing, writing) of ``result``, done by the consumer."""
        self.stats.add_output(ms)
        stream = next((s for s in self.streams if s.name == result.meta.source), None)
        if stream is not None:
            stream.stats.add_output(ms)

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
