"""Counters and per-stage latencies of a video run, in fixed memory (a run may last for months).

Latencies go into log-spaced histograms (2% wide buckets, so percentiles are within ~1%), never into growing lists.
The stages of a frame:

- ``decode``: reading the frame from the source (on a live source, this includes waiting for it to arrive);
- ``preprocess``: letterboxing;
- ``infer``: from handing the input to the engine to its outputs being ready (queueing behind requests included);
- ``postprocess``: mapping the graph's outputs to :class:`~lighthead_edge.runtime.detector.Detections`;
- ``output``: drawing, writing the video and JSONL, showing (recorded by whoever consumes the results);
- ``latency``: from the frame being read to its detections being ready, end to end.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("decode", "preprocess", "infer", "postprocess", "output", "latency")
# what a source counts (runtime.sources.Source): skipped frames, and the events of a live stream
SOURCE_COUNTERS = ("corrupt", "missing", "reconnects", "reconnect_attempts", "gaps", "gap_seconds",
                   "resolution_changes")  # fmt: skip
_LOW_MS, _RATIO, _BUCKETS = 1e-3, 1.02, 1100  # 1 us .. ~3 h


class Histogram:
    """Counts of milliseconds in log-spaced buckets: constant memory, percentiles within about 1%."""

    __slots__ = ("counts", "n", "total", "peak")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.n, self.total, self.peak = 0, 0.0, 0.0

    def add(self, ms: float) -> None:
        ms = max(ms, 0.0)
        index = 0 if ms <= _LOW_MS else min(_BUCKETS - 1, int(math.log(ms / _LOW_MS) / math.log(_RATIO)) + 1)
        self.counts[index] += 1
        self.n += 1
        self.total += ms
        self.peak = max(self.peak, ms)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ms, as the geometric middle of its bucket; 0 when empty."""
        if not self.n:
            return 0.0
        rank, seen = q / 100.0 * self.n, 0
        for index, count in enumerate(self.counts):
            seen += count
            if count and seen >= rank:
                return 0.0 if index == 0 else min(self.peak, _LOW_MS * _RATIO ** (index - 0.5))
        return self.peak

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def describe(self) -> dict[str, float]:
        return {"p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "mean_ms": self.mean,
                "max_ms": self.peak, "count": self.n}  # fmt: skip


@dataclass
class Summary:
    """What a run did. ``frames_read == processed + dropped`` when it ends normally; ``corrupt`` and ``missing``
    frames were never read as frames, so they are counted apart. A live stream's events: ``reconnects`` (successful
    reopens) of ``reconnect_attempts``, ``gaps`` (outages) lasting ``gap_seconds`` in all, ``resolution_changes``.
    With several sources, ``streams`` holds each one's own summary (as a dict) by name, and ``failed`` the error of
    each source that ended with one."""

    frames_read: int
    processed: int
    dropped: int
    corrupt: int
    missing: int
    reconnects: int
    seconds: float
    fps: float
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped_by: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    reconnect_attempts: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    resolution_changes: int = 0
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _events(self: Summary | dict[str, Any]) -> str:
        """ ", reconnects 1 of 3 attempts, 1 gap (7.2 s), 1 resolution change" (what happened)."""
        get = self.get if isinstance(self, dict) else lambda key, default=0: getattr(self, key, default)
        text = ""
        if get("reconnect_attempts", 0) or get("reconnects", 0):
            text += f", reconnects {get('reconnects', 0)} of {max(get('reconnect_attempts', 0), get('reconnects', 0))}"
            text += " attempts"
        if get("gaps", 0):
            text += f", {get('gaps')} gap{'s' if get('gaps') > 1 else ''} ({get('gap_seconds', 0.0):.1f} s)"
        if get("resolution_changes", 0):
            n = get("resolution_changes")
            text += f", {n} resolution change{'s' if n > 1 else ''}"
        return text

    def format(self) -> str:
        """A few lines for stderr."""
        lines = [
            f"summary: {self.processed} frames processed in {self.seconds:.1f} s ({self.fps:.1f} fps); "
            f"read {self.frames_read}, dropped {self.dropped}, corrupt {self.corrupt}"
            + (f", missing {self.missing} (file shorter than its header says: truncated?)" if self.missing else "")
            + self._events()
            + (f"; stopped by {self.stopped_by}" if self.stopped_by else ""),
        ]
        for name, s in self.streams.items():
            lines.append(
                f"  {name}: {s['processed']} frames ({s['fps']:.1f} fps), latency p50 "
                f"{s['stages']['latency']['p50_ms']:.1f} ms, dropped {s['dropped']}, corrupt {s['corrupt']}"
                + Summary._events(s)
                + (f"; failed: {self.failed[name]}" if name in self.failed else "")
            )

        if any(s["count"] for s in self.stages.values()):
            lines.append("  stage        p50 ms   p95 ms  mean ms   max ms")
        for name in STAGES:
            s = self.stages.get(name)
            if s and s["count"]:
                values = " ".join(f"{s[key]:8.2f}" for key in ("p50_ms", "p95_ms", "mean_ms", "max_ms"))
                lines.append(f"  {name:<11}{values}")
        return "\n".join(lines)


class RunStats:
    """Thread-safe counters and stage histograms of one run, plus a window that the periodic stats line resets."""

    def __init__(self) -> None:
        # re-entrant: a signal handler may run on the main thread while that thread is inside one of these methods
        self._lock = threading.RLock()
        self.stages = {name: Histogram() for name in STAGES}
        self.frames_read = self.processed = self.dropped = 0
        self.corrupt = self.missing = self.reconnects = self.reconnect_attempts = 0
        self.gaps = self.resolution_changes = 0
        self.gap_seconds = 0.0
        self.ended: float | None = None
        self.restart()

    def restart(self) -> None:
        """Start the clock (and the stats window) now: when the source is open and the model loaded."""
        self.started = time.perf_counter()
        self._window = Histogram()
        self._window_start, self._window_frames = self.started, 0

    def add_read(self, decode_ms: float) -> None:
        with self._lock:
            self.frames_read += 1
            self.stages["decode"].add(decode_ms)

    def add_dropped(self, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            self.dropped += n

    def add_processed(self, preprocess_ms: float, infer_ms: float, postprocess_ms: float, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._window_frames += 1
            for name, ms in (("preprocess", preprocess_ms), ("infer", infer_ms), ("postprocess", postprocess_ms),
                             ("latency", latency_ms)):  # fmt: skip
                self.stages[name].add(ms)
            self._window.add(latency_ms)

    def add_output(self, output_ms: float) -> None:
        with self._lock:
            self.stages["output"].add(output_ms)

    def set_source_counters(self, **counters: float) -> None:
        """The source's own counters (names from :data:`SOURCE_COUNTERS`), as it reports them now."""
        for name, value in counters.items():
            if name not in SOURCE_COUNTERS:
                raise TypeError(f"unknown source counter {name!r}")
            setattr(self, name, value)

    def window_line(self) -> str:
        """The periodic stats line (fps and latency since the last one), and start a new window."""
        now = time.perf_counter()
        with self._lock:
            seconds = max(now - self._window_start, 1e-9)
            fps, p50, p95 = self._window_frames / seconds, self._window.percentile(50), self._window.percentile(95)
            self._window, self._window_start, self._window_frames = Histogram(), now, 0
            line = (f"[{now - self.started:7.1f} s] {fps:6.1f} fps  latency p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
                    f"processed {self.processed}  dropped {self.dropped}  corrupt {self.corrupt}")  # fmt: skip
        return (
            line
            + (f"  reconnects {self.reconnects}" if self.reconnects else "")
            + (f"  gaps {self.gaps} ({self.gap_seconds:.1f} s)" if self.gaps else "")
        )

    def finish(self) -> None:
        self.ended = self.ended or time.perf_counter()

    def summary(self, stopped_by: str | None = None, settings: dict[str, Any] | None = None) -> Summary:
        with self._lock:
            seconds = (self.ended or time.perf_counter()) - self.started
            return Summary(
                frames_read=self.frames_read, processed=self.processed, dropped=self.dropped, corrupt=self.corrupt,
                missing=self.missing, reconnects=self.reconnects, seconds=seconds,
                fps=self.processed / seconds if seconds > 0 else 0.0,
                stages={name: h.describe() for name, h in self.stages.items()}, stopped_by=stopped_by,
                settings=dict(settings or {}), reconnect_attempts=self.reconnect_attempts, gaps=self.gaps,
                gap_seconds=round(float(self.gap_seconds), 3), resolution_changes=self.resolution_changes,
            )  # fmt: skip
