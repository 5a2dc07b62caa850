"""Many sources in one process: one compiled model, one stats record and one set of outputs per source, a fair
share of the engine for live sources, and a source that stalls or fails holding back no other."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runner_media import make_frame

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.detector import Detector
from lighthead_edge.runtime.pipeline import Pipeline
from lighthead_edge.runtime.runner import RunSettings, read_source_list, run_video, source_names
from lighthead_edge.runtime.sources import Frame, Source, SourceKind, SourceSpec


class Ticker(Source):
    """A live source at ``fps`` (frames 160x120); with ``stall_after`` it stops sending after that many seconds and
    its read blocks, as a camera that keeps its connection open and sends nothing, until interrupted."""

    live = True

    def __init__(self, name: str, fps: float, stall_after: float | None = None) -> None:
        self.name, self.period, self.stall_after = name, 1.0 / fps, stall_after
        self._open, self._stop = False, threading.Event()
        self.sent = 0

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open, self._start = True, None

    def read(self) -> Frame | None:
        self._start = self._start or time.perf_counter()  # the clock starts at the first read, as a camera's stream
        now = time.perf_counter() - self._start
        if self.stall_after is not None and now >= self.stall_after:
            self._stop.wait()
            return None
        due = self.sent * self.period
        if due > now and self._stop.wait(due - now):
            return None
        self.sent += 1
        return Frame(make_frame(self.sent, 160, 120), time.time())

    def interrupt(self) -> None:
        self._stop.set()


def settings(bundle: Path, specs: list[SourceSpec], **kw: object) -> RunSettings:
    return RunSettings(sources=tuple(specs), model=str(bundle), threads=1, stats_every=0, **kw)


def video(path: Path) -> SourceSpec:
    return SourceSpec(SourceKind.VIDEO, str(path))


def test_videos_and_images_with_per_source_outputs(tiny_bundle: Path, video_mp4: Path, video_avi: Path, tmp_path):
    """Three sources, one model: a video per source ({source} in --save), JSONL lines that carry "source" with each
    source's frames in order, and each source's own counters in the summary."""
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), make_frame(i, 200, 100))
    specs = [video(video_mp4), video(video_avi), SourceSpec(SourceKind.IMAGES, str(folder))]
    out = settings(tiny_bundle, specs, save=str(tmp_path / "out_{source}.avi"), jsonl=str(tmp_path / "all.jsonl"),
                   summary_json=str(tmp_path / "summary.json"))  # fmt: skip
    assert out.names == ["clip", "clip-2", "shots"]
    logs: list[str] = []
    summary = run_video(out, log=logs.append)
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    by_source = {name: [r for r in records if r["source"] == name] for name in out.names}
    assert {k: len(v) for k, v in by_source.items()} == {"clip": 40, "clip-2": 30, "shots": 5}
    for rows in by_source.values():
        assert [r["frame"] for r in rows] == list(range(len(rows)))
    assert {(r["width"], r["height"]) for r in by_source["shots"]} == {(200, 100)}
    for name, frames in (("clip", 40), ("clip-2", 30), ("shots", 5)):
        cap = cv2.VideoCapture(str(tmp_path / f"out_{name}.avi"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames, name
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["processed"] == 75 and {k: v["processed"] for k, v in saved["streams"].items()} == {
        "clip": 40, "clip-2": 30, "shots": 5}  # fmt: skip
    assert summary.processed == 75 and "3 sources: clip (video" in logs[0]
    assert any(line.startswith("  clip-2: 30 frames") for line in summary.format().splitlines())


def test_jsonl_per_source_and_save_needs_the_pattern(tiny_bundle: Path, video_mp4: Path, video_avi: Path, tmp_path):
    specs = [video(video_mp4), video(video_avi)]
    run_video(settings(tiny_bundle, specs, jsonl=str(tmp_path / "{source}.jsonl")), log=lambda m: None)
    assert [len((tmp_path / f"{n}.jsonl").read_text().splitlines()) for n in ("clip", "clip-2")] == [40, 30]
    assert json.loads((tmp_path / "clip-2.jsonl").read_text().splitlines()[0])["source"] == "clip-2"
    with pytest.raises(ConfigError, match=r"--save with 2 sources needs \{source\} in its path"):
        settings(tiny_bundle, specs, save=str(tmp_path / "out.mp4"))
    with pytest.raises(ConfigError, match="only one --stdin-raw"):
        settings(tiny_bundle, [SourceSpec(SourceKind.STDIN_RAW, "8x6")] * 2)


def test_a_source_that_fails_to_open_is_left_out(tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    logs: list[str] = []
    specs = [video(video_mp4), video(tmp_path / "gone.mp4")]
    summary = run_video(settings(tiny_bundle, specs, jsonl=str(tmp_path / "a.jsonl")), log=logs.append)
    assert summary.processed == 40 and list(summary.failed) == ["gone"] and "not found" in summary.failed["gone"]
    assert any(line.startswith("warning: source gone left out: video") for line in logs)
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 40


def test_source_list_file(tmp_path: Path, video_mp4: Path) -> None:
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# yard\n{video_mp4}\n\nrtsp://user:secret@10.0.0.9/live\nftp://x/y\n{tmp_path}/nope.mp4\n3\n")
    specs, errors = read_source_list(listing, reconnect=True)
    assert [(s.kind, s.reconnect) for s in specs] == [(SourceKind.VIDEO, True), (SourceKind.URL, True),
                                                      (SourceKind.CAMERA, True)]  # fmt: skip
    assert source_names(specs) == ["clip", "live", "camera3"]
    assert [e.split(": ")[0] for e in errors] == [f"--sources {listing} line 5", f"--sources {listing} line 6"]
    assert "no stream URL" in errors[0] and "not found" in errors[1] and "secret" not in " ".join(errors)


def detector(bundle: Path) -> Detector:
    return Detector(bundle, "onnxruntime", threads=1, jobs=2)


def test_live_sources_share_the_engine_fairly(tiny_bundle: Path) -> None:
    """Four live sources faster than the engine: each gets its fair share of the frames processed (within 10%)."""
    tickers = [Ticker(f"cam{i}", fps=500.0) for i in range(4)]
    with Pipeline(detector(tiny_bundle), tickers, duration=3.0) as pipe:
        counts = {t.name: 0 for t in tickers}
        for result in pipe:
            counts[result.meta.source] += 1
    fair = sum(counts.values()) / len(counts)
    assert sum(counts.values()) > 40, counts
    assert all(abs(n - fair) <= 0.1 * fair for n in counts.values()), counts
    summary = pipe.summary()
    assert {k: v["processed"] for k, v in summary.streams.items()} == counts
    assert all(v["dropped"] > 0 for v in summary.streams.values())  # newest frame first: the rest were dropped


def test_one_stalled_source_of_three_holds_back_no_other(tiny_bundle: Path) -> None:
    """Three 20 fps sources; one stops sending after 0.5 s and blocks in read: the other two keep their rate."""
    tickers = [Ticker("a", 20.0), Ticker("b", 20.0), Ticker("stalled", 20.0, stall_after=0.5)]
    with Pipeline(detector(tiny_bundle), tickers, duration=3.0) as pipe:
        counts = {t.name: 0 for t in tickers}
        for result in pipe:
            counts[result.meta.source] += 1
    seconds = pipe.summary().seconds
    for name in ("a", "b"):
        assert counts[name] / seconds >= 0.9 * 20.0, (counts, seconds)
    assert counts["stalled"] <= 12, counts
    assert pipe.stopped_by == "duration"


def test_a_source_that_raises_ends_alone(tiny_bundle: Path) -> None:
    class Broken(Ticker):
        def read(self) -> Frame | None:
            if self.sent >= 3:
                raise OSError("the capture card went away")
            return super().read()

    tickers = [Ticker("ok", 50.0), Broken("broken", 50.0)]
    with Pipeline(detector(tiny_bundle), tickers, duration=1.5) as pipe:
        sources = [r.meta.source for r in pipe]
    assert sources.count("broken") == 3 and sources.count("ok") >= 60
    assert list(pipe.failed) == ["broken"] and "capture card" in str(pipe.failed["broken"])
    with pytest.raises(OSError, match="capture card"):  # every source failed: the run did
        with Pipeline(detector(tiny_bundle), [Broken("only", 50.0)]) as pipe:
            list(pipe)


def test_frames_of_each_source_come_in_order(tiny_bundle: Path) -> None:
    tickers = [Ticker(f"s{i}", fps=200.0) for i in range(3)]
    seen: dict[str, list[int]] = {t.name: [] for t in tickers}
    with Pipeline(detector(tiny_bundle), tickers, max_frames=30, drop=False) as pipe:
        for result in pipe:
            seen[result.meta.source].append(result.meta.index)
            assert isinstance(result.frame, np.ndarray)
    assert all(v == list(range(30)) for v in seen.values()), seen
    assert pipe.stopped_by == "max-frames"


def test_raw_streams_on_named_pipes_and_stdin(run_cli, tiny_bundle: Path, tmp_path: Path) -> None:
    """``--stdin-raw WxH@FIFO`` is repeatable, beside one ``--stdin-raw WxH`` on standard input: three raw streams,
    one process, every frame of each (a short last one counted corrupt) in its own JSONL file."""
    import os

    frames = {"cam_a": 7, "cam_b": 4}
    for name in frames:
        os.mkfifo(tmp_path / f"{name}.fifo")

    def feed(name: str, n: int) -> None:
        with open(tmp_path / f"{name}.fifo", "wb") as pipe:  # blocks until the runner opens its end
            for i in range(n):
                pipe.write(make_frame(i, 32, 24).tobytes())
            pipe.write(b"\0" * 100)  # a short last frame

    writers = [threading.Thread(target=feed, args=item, daemon=True) for item in frames.items()]
    for writer in writers:
        writer.start()
    stdin = b"".join(make_frame(i, 32, 24).tobytes() for i in range(5))
    proc = run_cli("--model", tiny_bundle, "--stdin-raw", "32x24", "--stdin-raw", f"32x24@{tmp_path / 'cam_a.fifo'}",
                   "--stdin-raw", f"32x24@{tmp_path / 'cam_b.fifo'}", "--no-drop", "--jsonl",
                   tmp_path / "{source}.jsonl", "--summary-json", tmp_path / "s.json", "--stats-every", "0",
                   input=stdin)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    counts = {n: len((tmp_path / f"{n}.jsonl").read_text().splitlines()) for n in ("stdin", "cam_a", "cam_b")}
    assert counts == {"stdin": 5, **frames}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert {k: v["corrupt"] for k, v in summary["streams"].items()} == {"stdin": 0, "cam_a": 1, "cam_b": 1}
    proc = run_cli("--model", tiny_bundle, "--stdin-raw", "32x24", "--stdin-raw", "32x24", input=b"")
    assert proc.returncode == 2 and b"only one --stdin-raw source can read standard input" in proc.stderr
