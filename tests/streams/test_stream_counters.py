"""Reconnecting's outage counters and log lines on a scripted source (no server, no waiting beyond a few 0.1 s):
``gaps``, ``gap_seconds``, ``reconnect_attempts``, ``reconnects``, ``resolution_changes``."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lighthead_edge.runtime import sources
from lighthead_edge.runtime.sources import Frame, Reconnecting, Source, SourceError


class Scripted(Source):
    """A live source that plays ``script``: ``("frame", width)`` gives a frame of that width, ``("wait", s, width)``
    one after ``s`` seconds, ``("drop", s)`` ends the connection after ``s`` seconds, ``("refuse",)`` fails the next
    open (consumed by ``open``); reads past the end drop."""

    live = True
    name = "scripted"

    def __init__(self, script: list[tuple]) -> None:
        self.script, self.opens = list(script), 0

    def open(self) -> None:
        self.opens += 1
        if self.script and self.script[0][0] == "refuse":
            self.script.pop(0)
            raise SourceError("can't open scripted: refused", "refused")

    def read(self) -> Frame | None:
        step = self.script.pop(0) if self.script and self.script[0][0] != "refuse" else ("drop", 0.0)
        if step[0] in ("wait", "drop"):
            time.sleep(step[1])
        if step[0] == "drop":
            return None
        image = np.zeros((8, step[-1], 3), np.uint8)
        self._note_size(image)
        return Frame(image, time.time())


def reconnecting(script: list[tuple], logs: list[str]) -> Reconnecting:
    source = Reconnecting(Scripted(script), initial=0.05, maximum=0.1, log=logs.append)
    source.open()
    return source


def test_drop_and_reconnect_at_a_new_size() -> None:
    logs: list[str] = []
    source = reconnecting([("frame", 8), ("frame", 8), ("drop", 0.0), ("refuse",), ("frame", 16)], logs)
    widths = [source.read().image.shape[1] for _ in range(3)]
    assert widths == [8, 8, 16]
    assert (source.gaps, source.reconnect_attempts, source.reconnects, source.resolution_changes) == (1, 2, 1, 1)
    assert 0.1 <= source.gap_seconds < 0.5  # 0.05 s + 0.1 s of backoff at least
    assert logs[0] == "warning: scripted dropped; reconnecting in 0.1 s"
    assert logs[1] == "warning: scripted still unavailable: refused; next try in 0.1 s (attempt 1)"
    assert logs[2].startswith("reconnected to scripted after a 0.") and logs[2].endswith(" s gap (attempt 2)")
    assert logs[3] == "scripted: resolution changed 8x8 -> 16x8" and len(logs) == 4


def test_first_open_fails_an_outage_from_the_start() -> None:
    logs: list[str] = []
    source = reconnecting([("refuse",), ("refuse",), ("frame", 8)], logs)
    assert logs == ["warning: can't open scripted yet: refused; retrying in 0.1 s (--reconnect)"]
    assert source.read() is not None
    assert (source.gaps, source.reconnect_attempts, source.reconnects) == (1, 2, 1) and source.gap_seconds >= 0.1


def test_a_stall_that_resumes_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "STALL_S", 0.1)
    logs: list[str] = []
    source = reconnecting([("frame", 8), ("wait", 0.3, 8), ("frame", 8)], logs)
    for _ in range(3):
        source.read()
    assert (source.gaps, source.reconnect_attempts, source.reconnects) == (1, 0, 0)
    assert source.gap_seconds == pytest.approx(0.3, abs=0.1)
    assert len(logs) == 1 and "scripted: no frames for 0.3 s, then resumed (no reconnect)" in logs[0]


def test_a_stall_that_times_out_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "STALL_S", 0.1)
    logs: list[str] = []
    source = reconnecting([("frame", 8), ("drop", 0.3), ("frame", 8)], logs)
    source.read(), source.read()
    assert logs[0] == "warning: scripted: no frames for 0.3 s; reconnecting in 0.1 s"
    assert (source.gaps, source.reconnects) == (1, 1) and source.gap_seconds == pytest.approx(0.35, abs=0.1)


def test_gap_stops_growing_at_the_stop() -> None:
    """Down for good: the outage counts up to interrupt(), then stays."""
    logs: list[str] = []
    source = reconnecting([("frame", 8)] + [("refuse",)] * 100, logs)
    source.read()
    threading.Timer(0.3, source.interrupt).start()
    assert source.read() is None
    stopped = source.gap_seconds
    time.sleep(0.2)
    assert source.gap_seconds == stopped == pytest.approx(0.3, abs=0.1)
    assert source.gaps == 1 and source.reconnects == 0 and source.reconnect_attempts >= 2


def test_base_source_counters_are_zero() -> None:
    source = Source()
    assert (source.gaps, source.gap_seconds, source.reconnect_attempts, source.resolution_changes) == (0, 0.0, 0, 0)
