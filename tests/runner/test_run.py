"""``run_video`` (what ``lighthead-edge run`` does) in-process: outputs, every source type, reconnects, the bundle
pointer."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from runner_media import count_video_frames, make_frame

from lighthead_edge.runtime.bundle import BundleError
from lighthead_edge.runtime.runner import BUNDLE_ENV, RunSettings, remember_bundle, resolve_bundle, run_video
from lighthead_edge.runtime.sources import SourceKind, SourceSpec


def settings(bundle: Path, kind: SourceKind, target: object, **kw: object) -> RunSettings:
    spec_keys = {"loop", "reconnect", "fps", "width", "height"}
    spec = SourceSpec(kind, str(target), **{k: v for k, v in kw.items() if k in spec_keys})
    rest = {k: v for k, v in kw.items() if k not in spec_keys}
    return RunSettings(source=spec, model=str(bundle), threads=1, stats_every=0, **rest)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_to_mp4_jsonl_and_summary(tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    logs: list[str] = []
    out = settings(tiny_bundle, SourceKind.VIDEO, video_mp4, save=str(tmp_path / "out" / "annotated.mp4"),
                   jsonl=str(tmp_path / "dets.jsonl"), summary_json=str(tmp_path / "summary.json"))  # fmt: skip
    summary = run_video(out, log=logs.append)
    assert (summary.frames_read, summary.processed, summary.dropped, summary.corrupt) == (40, 40, 0, 0)
    assert count_video_frames(tmp_path / "out" / "annotated.mp4") == 40
    records = read_jsonl(tmp_path / "dets.jsonl")
    assert [r["frame"] for r in records] == list(range(40))
    assert records[0]["width"] == 160 and records[0]["height"] == 120 and records[0]["detections"]
    det = records[0]["detections"][0]
    assert set(det) == {"box", "score", "label", "class"} and det["class"] in ("cat", "dog") and det["score"] >= 0.3
    assert json.loads((tmp_path / "summary.json").read_text())["processed"] == 40
    assert any(line.startswith("summary: 40 frames") for line in logs)
    assert all(stage in "\n".join(logs) for stage in ("decode", "preprocess", "infer", "postprocess"))


def test_images_folder_with_a_corrupt_file_and_mixed_sizes(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate([(160, 120), (200, 100), (90, 160)]):
        cv2.imwrite(str(folder / f"{i}.jpg"), make_frame(i, w, h))
    (folder / "1b.png").write_bytes(b"\x89PNG broken")
    out = settings(tiny_bundle, SourceKind.IMAGES, folder, save=str(tmp_path / "a.avi"), jsonl=str(tmp_path / "d"))
    summary = run_video(out, log=lambda m: None)
    assert (summary.processed, summary.corrupt) == (3, 1)
    assert [(r["width"], r["height"]) for r in read_jsonl(tmp_path / "d")] == [(160, 120), (200, 100), (90, 160)]
    assert count_video_frames(tmp_path / "a.avi") == 3  # later sizes letterboxed into the first


def test_file_url_and_onnxruntime(tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    out = settings(tiny_bundle, SourceKind.URL, video_mp4.resolve().as_uri(), backend="onnxruntime", max_frames=12,
                   jsonl=str(tmp_path / "d.jsonl"))  # fmt: skip
    summary = run_video(out, log=lambda m: None)
    assert summary.processed == 12 and summary.dropped == 0 and summary.stopped_by == "max-frames"
    assert summary.settings["artifact"] == "onnxruntime/fp32"


def test_mjpeg_stream_drops_reconnects_at_a_new_size_then_goes_away(tiny_bundle: Path, mjpeg_server, tmp_path):
    server = mjpeg_server([(8, (160, 120)), (8, (200, 150))])
    logs: list[str] = []
    out = settings(tiny_bundle, SourceKind.URL, server.url, reconnect=True, duration=3.5,
                   save=str(tmp_path / "s.mp4"), jsonl=str(tmp_path / "s.jsonl"))  # fmt: skip
    summary = run_video(out, log=logs.append)
    assert server.connections >= 2 and summary.reconnects == 1  # the third try finds the server gone: still alive
    assert summary.frames_read == 16 and summary.processed + summary.dropped == 16
    assert summary.stopped_by == "duration"
    sizes = {(r["width"], r["height"]) for r in read_jsonl(tmp_path / "s.jsonl")}
    assert sizes == {(160, 120), (200, 150)}
    assert count_video_frames(tmp_path / "s.mp4") == summary.processed
    assert any("dropped; reconnecting" in line for line in logs) and any("unavailable" in line for line in logs)


def test_mjpeg_stream_without_reconnect_just_ends(tiny_bundle: Path, mjpeg_server) -> None:
    server = mjpeg_server([(6, (160, 120))])
    summary = run_video(settings(tiny_bundle, SourceKind.URL, server.url), log=lambda m: None)
    assert summary.frames_read == 6 and summary.processed + summary.dropped == 6 and summary.reconnects == 0


def test_truncated_videos(tiny_bundle: Path, video_avi: Path, video_mp4: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video_avi.read_bytes()[: video_avi.stat().st_size * 2 // 3])
    logs: list[str] = []
    summary = run_video(settings(tiny_bundle, SourceKind.VIDEO, cut), log=logs.append)
    assert 0 < summary.processed < 30 and summary.processed + summary.missing + summary.corrupt == 30
    assert "truncated" in logs[-1] or "truncated" in "\n".join(logs)


def test_last_bundle_pointer(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    with pytest.raises(BundleError, match="no --model given"):
        resolve_bundle(None)
    remember_bundle(tiny_bundle)
    assert resolve_bundle(None) == tiny_bundle.resolve()
    assert resolve_bundle("elsewhere") == Path("elsewhere")
    monkeypatch.setenv(BUNDLE_ENV, str(tmp_path / "gone"))
    with pytest.raises(BundleError, match="no longer exists"):
        resolve_bundle(None)


def test_show_without_a_display_warns_and_runs_on(tiny_bundle: Path, video_mp4: Path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    logs: list[str] = []
    summary = run_video(settings(tiny_bundle, SourceKind.VIDEO, video_mp4, show=True, max_frames=3), log=logs.append)
    assert summary.processed == 3 and any("--show ignored: no display" in line for line in logs)
