"""The pipeline in-process on a real tiny bundle: order, drops, limits, stopping, errors, and the embedding API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runner_media import make_frame

from lighthead_edge.runtime import Detector
from lighthead_edge.runtime.pipeline import FrameQueue, Pipeline, run
from lighthead_edge.runtime.sources import Frame, Source, VideoFileSource


@pytest.fixture(scope="module")
def detector(tiny_bundle: Path) -> Detector:
    return Detector(tiny_bundle, "openvino", threads=1)


class Synthetic(Source):
    """``n`` generated frames, ``live`` or not, every ``interval`` seconds; raises at frame ``fail_at``."""

    def __init__(self, n: int, *, live: bool, interval: float = 0.0, fail_at: int | None = None) -> None:
        self.n, self.live, self.interval, self.fail_at = n, live, interval, fail_at
        self.i, self.opened, self.closed = 0, False, False

    @property
    def is_open(self) -> bool:
        return self.opened

    def open(self) -> None:
        self.opened = True

    def read(self) -> Frame | None:
        if self.i == self.fail_at:
            raise RuntimeError("camera unplugged")
        if self.i >= self.n:
            return None
        time.sleep(self.interval)
        self.i += 1
        return Frame(make_frame(self.i, 96, 64), float(self.i))

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_file_source_every_frame_in_order(tiny_bundle: Path, video_mp4: Path, backend: str) -> None:
    detector = Detector(tiny_bundle, backend, threads=1, jobs=3)
    with Pipeline(detector, VideoFileSource(video_mp4), nireq=4) as pipe:  # at most the engine's 3 requests
        results = list(pipe)
    assert pipe.nireq == 3 and [r.meta.index for r in results] == list(range(40))
    summary = pipe.summary()
    assert (summary.frames_read, summary.processed, summary.dropped) == (40, 40, 0)
    # the async path gives exactly what a plain call gives
    direct = detector(results[7].frame)
    np.testing.assert_allclose(results[7].detections.boxes, direct.boxes, atol=1e-3)
    assert len(results[7].detections) > 0 and results[7].meta.infer_ms > 0


def test_live_source_drops_stale_frames_and_keeps_order(detector: Detector) -> None:
    source = Synthetic(80, live=True, interval=0.001)
    indices = []
    with Pipeline(detector, source) as pipe:
        for result in pipe:
            indices.append(result.meta.index)
            time.sleep(0.02)  # a slow consumer: the capture runs ahead and stale frames are dropped
    summary = pipe.summary()
    assert summary.frames_read == 80 and summary.dropped > 0
    assert summary.processed + summary.dropped == summary.frames_read == len(indices) + summary.dropped
    assert indices == sorted(set(indices))


def test_no_drop_processes_every_live_frame(detector: Detector) -> None:
    with Pipeline(detector, Synthetic(25, live=True), drop=False) as pipe:
        assert len(list(pipe)) == 25
    assert pipe.summary().dropped == 0


def test_max_frames_and_duration(detector: Detector, video_mp4: Path) -> None:
    with Pipeline(detector, VideoFileSource(video_mp4), max_frames=7) as pipe:
        assert len(list(pipe)) == 7
    assert pipe.summary().stopped_by == "max-frames"
    start = time.perf_counter()
    with Pipeline(detector, VideoFileSource(video_mp4, loop=True), duration=0.6) as pipe:
        results = list(pipe)
    summary = pipe.summary()
    assert time.perf_counter() - start < 5 and summary.stopped_by == "duration" and results
    assert summary.processed + summary.dropped == summary.frames_read


def test_stop_finishes_the_frames_in_flight(detector: Detector) -> None:
    pipe = Pipeline(detector, Synthetic(10_000, live=False), nireq=2)
    got = 0
    for _ in pipe:
        got += 1
        if got == 5:
            threading.Thread(target=pipe.stop, args=("test",)).start()
    summary = pipe.summary()
    assert got >= 5 and summary.stopped_by == "test" and summary.processed == got
    assert summary.frames_read == summary.processed + summary.dropped


def test_source_error_reaches_the_consumer_after_earlier_frames(detector: Detector) -> None:
    source = Synthetic(100, live=False, fail_at=3)
    pipe = Pipeline(detector, source)
    got = []
    with pytest.raises(RuntimeError, match="unplugged"):
        for result in pipe:
            got.append(result.meta.index)
    assert got == [0, 1, 2] and source.closed


def test_run_yields_pairs_and_closes_the_source_when_left_early(detector: Detector, video_mp4: Path) -> None:
    pairs = list(run(detector, str(video_mp4), max_frames=3))
    assert len(pairs) == 3 and pairs[0][0].shape == (120, 160, 3) and hasattr(pairs[0][1], "boxes")
    source = Synthetic(10_000, live=True, interval=0.002)
    for i, (_frame, _detections) in enumerate(run(detector, source)):
        if i == 2:
            break
    assert source.closed


def test_frame_queue_modes() -> None:
    latest = FrameQueue(latest=True)
    assert [latest.put(i) for i in range(3)] == [0, 1, 1] and latest.get() == 2
    fifo = FrameQueue(latest=False, maxsize=2)
    assert fifo.put(1) == 0 and fifo.put(2) == 0
    threading.Timer(0.1, fifo.get).start()
    assert fifo.put(3) == 0  # waited for room instead of dropping
    assert fifo.close(discard=True) == 2 and fifo.put(5) == 1


def test_next_frame_is_letterboxed_while_the_engine_is_busy(tiny_bundle: Path) -> None:
    """A freed request starts on a frame already prepared: frame k's letterbox begins before frame k-1's inference
    ends (with one request in flight), so the engine never waits for the host's letterbox."""
    detector = Detector(tiny_bundle, "openvino", threads=1, jobs=1)
    prepared_at: list[float] = []
    done_at: list[float] = []
    preprocess, submit = detector.preprocess, detector.engine.submit

    def slow_preprocess(image: np.ndarray):
        prepared_at.append(time.perf_counter())
        time.sleep(0.02)
        return preprocess(image)

    def slow_submit(image: np.ndarray, callback) -> None:
        def later(result) -> None:  # the inference takes 50 ms longer
            def settle() -> None:
                done_at.append(time.perf_counter())
                callback(result)

            threading.Timer(0.05, settle).start()

        submit(image, later)

    detector.preprocess, detector.engine.submit = slow_preprocess, slow_submit
    with Pipeline(detector, Synthetic(6, live=False), nireq=1) as pipe:
        results = list(pipe)
    assert [r.meta.index for r in results] == list(range(6))
    done_at = done_at[1:]  # the pipeline's warm-up inference comes first
    assert len(prepared_at) == len(done_at) == 6
    assert all(prepared_at[k] < done_at[k - 1] for k in range(1, 6)), (prepared_at, done_at)
    # the stage times keep apart: the letterbox's own 20 ms, not the wait for the request
    assert all(15.0 <= r.meta.preprocess_ms < 45.0 for r in results), [r.meta.preprocess_ms for r in results]
