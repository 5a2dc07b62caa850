"""Frame sources on generated media: what they read, what they skip and count, and how they fail."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runner_media import make_frame

from lighthead_edge.runtime.sources import (
    CameraSource,
    Frame,
    ImageFolderSource,
    RawStreamSource,
    Reconnecting,
    Source,
    SourceError,
    SourceKind,
    SourceSpec,
    UrlSource,
    VideoFileSource,
    open_source,
    parse_raw_size,
    redact,
)


def read_all(source: Source, limit: int = 10_000) -> list[Frame]:
    frames = []
    with source:
        while len(frames) < limit and (frame := source.read()) is not None:
            frames.append(frame)
    return frames


def test_video_file_every_frame_with_media_timestamps(video_mp4: Path) -> None:
    source = VideoFileSource(video_mp4)
    frames = read_all(source)
    assert len(frames) == 40 and source.corrupt == 0 and source.missing == 0
    assert frames[0].image.shape == (120, 160, 3) and source.fps == pytest.approx(20.0)
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps) and stamps[-1] == pytest.approx(39 / 20, abs=0.06)


def test_video_loop_restarts(video_avi: Path) -> None:
    source = VideoFileSource(video_avi, loop=True)
    frames = read_all(source, limit=75)
    assert len(frames) == 75 and source.loops == 2
    assert np.array_equal(frames[0].image, frames[30].image)


def test_truncated_avi_counts_missing_frames(video_avi: Path, tmp_path: Path) -> None:
    data = video_avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    source = VideoFileSource(cut)
    frames = read_all(source)
    assert 5 < len(frames) < 30
    assert len(frames) + source.missing + source.corrupt == 30


def test_truncated_mp4_is_a_clear_error(video_mp4: Path, tmp_path: Path) -> None:
    data = video_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # OpenCV's MP4 index (moov) is at the end: it is lost
    with pytest.raises(SourceError, match="truncated"):
        VideoFileSource(cut).open()
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "none.mp4").open()


def test_image_folder_skips_and_counts_corrupt_files(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), make_frame(i, 64 + 16 * i, 48))
    (tmp_path / "02b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImageFolderSource(tmp_path)
    frames = read_all(source)
    assert [f.image.shape[1] for f in frames] == [64, 80, 96, 112]  # name order; sizes may differ
    assert source.corrupt == 1 and not source.live
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "empty").open()


def test_raw_stream_frames_and_a_short_last_frame() -> None:
    frames = [make_frame(i, 32, 24) for i in range(5)]
    data = b"".join(f.tobytes() for f in frames) + frames[0].tobytes()[:100]
    source = RawStreamSource(32, 24, stream=io.BufferedReader(io.BytesIO(data)))
    got = read_all(source)
    assert len(got) == 5 and source.corrupt == 1 and source.live
    assert all(np.array_equal(a.image, b) for a, b in zip(got, frames))


@pytest.mark.parametrize("text", ["640", "axb", "0x10", "-4x4"])
def test_raw_size_errors(text: str) -> None:
    with pytest.raises(SourceError, match="--stdin-raw"):
        parse_raw_size(text)
    assert parse_raw_size("640x480") == (640, 480)


def test_missing_camera_fails_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(SourceError, match="camera 7"):
        CameraSource(7).open()
    assert time.perf_counter() - start < 2.0


def test_file_url_reads_like_a_file(video_mp4: Path) -> None:
    source = UrlSource(video_mp4.resolve().as_uri())
    assert not source.live
    assert len(read_all(source)) == 40


def test_unreachable_url_and_redaction() -> None:
    with pytest.raises(SourceError, match=r"user:\*\*\*@127\.0\.0\.1"):
        UrlSource("http://user:secret@127.0.0.1:9/stream.mjpg").open()  # port 9 (discard): refused at once
    assert redact("rtsp://cam.local/live") == "rtsp://cam.local/live"


def test_spec_guess_and_factory(tmp_path: Path, video_mp4: Path) -> None:
    assert SourceSpec.guess(0).kind is SourceKind.CAMERA
    assert SourceSpec.guess("rtsp://x/y").kind is SourceKind.URL
    assert SourceSpec.guess(tmp_path).kind is SourceKind.IMAGES
    assert SourceSpec.guess(video_mp4).kind is SourceKind.VIDEO
    assert isinstance(open_source(SourceSpec(SourceKind.URL, "rtsp://x/y", reconnect=True)), Reconnecting)
    assert isinstance(open_source(SourceSpec(SourceKind.VIDEO, str(video_mp4), reconnect=True)), VideoFileSource)


class Flaky(Source):
    """A live source whose connection ``k`` gives ``sizes[k]`` frames, failing to open once in between."""

    live = True

    def __init__(self, sizes: list[int]) -> None:
        self.sizes, self.connection, self.left, self.fail_next = sizes, -1, 0, False

    def open(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise SourceError("down")
        self.connection += 1
        self.left = self.sizes[self.connection] if self.connection < len(self.sizes) else 0

    def read(self) -> Frame | None:
        if self.left <= 0:
            self.fail_next = True
            return None
        self.left -= 1
        return Frame(np.full((8, 8 + self.connection, 3), self.connection, np.uint8), 0.0)


def test_reconnecting_backs_off_and_survives_size_changes() -> None:
    logs: list[str] = []
    source = Reconnecting(Flaky([3, 2, 4]), initial=0.01, maximum=0.05, log=logs.append)
    source.open()
    widths = [source.read().image.shape[1] for _ in range(9)]
    assert widths == [8] * 3 + [9] * 2 + [10] * 4
    assert source.reconnects == 2
    assert any("still unavailable" in line for line in logs) and any("dropped" in line for line in logs)
    # stopped while the stream is down: read() gives up instead of waiting for ever
    threading.Timer(0.1, source.interrupt).start()
    assert source.read() is None
