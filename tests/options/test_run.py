"""Every option of ``run`` reaches the code that uses it: an option parsed and dropped fails here.

Each case runs the real command in-process on the shared tiny bundle with one non-default value, and checks the
consumer: the engine's compiled settings, the source (a fake ``cv2.VideoCapture`` stands in for a camera and a
stream), the pipeline, the files written, the log.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from exported import ExportedAssets

from lighthead_edge.errors import ConfigError
from lighthead_edge.runner_cli import run_cmd
from lighthead_edge.runtime import pipeline as pipeline_module
from lighthead_edge.runtime import runner, sources

FRAMES = 3  # images in the base command's folder
CLIP = 6  # frames of the video file


@dataclass
class Seen:
    """What one command left behind."""

    pipeline: Any = None
    captures: list[FakeCapture] = field(default_factory=list)
    quieted: int = 0  # quiet_opencv calls
    log: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def engine(self) -> Any:
        return self.pipeline.detector.engine

    def ov(self, name: str) -> str:
        return str(self.engine._compiled.get_property(name))

    def jsonl(self) -> list[dict]:
        return [json.loads(line) for line in self.files["jsonl"].read_text().splitlines()]

    def summary(self) -> dict:
        return json.loads(self.files["summary"].read_text())


class FakeCapture:
    """A camera or stream: records what it was opened on and the properties set, then gives a few frames."""

    frames: list[np.ndarray] = []

    def __init__(self, target: object, *args: object) -> None:
        self.target, self.props, self._left = target, {}, list(self.frames)
        Seen.current.captures.append(self)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self._left.pop(0)) if self._left else (False, None)

    def release(self) -> None:
        pass


@pytest.fixture(scope="module")
def media(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of FRAMES val images and a CLIP-frame MJPG video of them."""
    root = tmp_path_factory.mktemp("run_options")
    images = json.loads(assets.val_json.read_text())["images"]
    (root / "images").mkdir()
    frames = []
    for i, im in enumerate(images[:CLIP]):
        frames.append(cv2.imread(str(assets.val_json.parent / im["file_name"])))
        if i < FRAMES:
            shutil.copy(assets.val_json.parent / im["file_name"], root / "images" / f"{i:03d}.png")
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    FakeCapture.frames = frames[:FRAMES]
    listed = root / "sources.txt"  # the clip, the image folder, a comment and a line that names nothing
    listed.write_text(f"# two cameras\n{root / 'clip.avi'}\n\n{root / 'images'}\n{root / 'gone.mp4'}\n")
    return {"bundle": assets.bundle, "images": root / "images", "clip": root / "clip.avi", "srclist": listed}


@pytest.fixture
def run(media, monkeypatch, tmp_path, capsys):
    """run(*args) -> Seen: ``lighthead-edge run --model BUNDLE ARGS`` ({name} filled in; ``--images`` unless a
    source is given), with --stats-every 0 unless given."""

    def go(*args: str, stdin: bytes | None = None) -> Seen:
        seen = Seen.current = Seen()
        seen.files = {"jsonl": tmp_path / "out.jsonl", "summary": tmp_path / "summary.json", "save": tmp_path / "o.avi"}
        start = pipeline_module.Pipeline.start

        def spy_start(self):
            seen.pipeline = self
            return start(self)

        monkeypatch.setattr(pipeline_module.Pipeline, "start", spy_start)
        monkeypatch.setattr(runner, "quiet_opencv", lambda: setattr(seen, "quieted", seen.quieted + 1))
        monkeypatch.setattr(cv2, "VideoCapture", FakeCapture if "{fake}" in args else cv2.VideoCapture)
        monkeypatch.setattr(sources.sys, "platform", "fake")  # no /dev/videoN probe before the fake camera
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stdin), "isatty": lambda s: 0})())
        names = {**{k: str(v) for k, v in media.items()}, **{k: str(v) for k, v in seen.files.items()}, "fake": ""}
        argv = [a.format(**names) for a in args if a != "{fake}"]
        if not {"--camera", "--video", "--url", "--images", "--stdin-raw", "--sources"} & set(argv):
            argv += ["--images", names["images"]]
        if "--stats-every" not in argv:
            argv += ["--stats-every", "0"]
        run_cmd.main(args=["--model", names["bundle"], *argv], standalone_mode=False)
        seen.log = capsys.readouterr().err
        return seen

    return go


def _read(seen: Seen) -> int:
    return seen.pipeline.stats.frames_read


def _scores(seen: Seen) -> list[float]:
    return [d["score"] for r in seen.jsonl() for d in r["detections"]]


# option name -> (arguments, check(seen, media), or the one-line error the consumer raises)
CASES = {
    "model": ([], lambda s, m: s.pipeline.detector.bundle.root == m["bundle"]),
    "camera": (["{fake}", "--camera", "3"],
               lambda s, m: s.captures[0].target == 3 and s.pipeline.source.name == "camera 3" and _read(s) == FRAMES),
    "width": (["{fake}", "--camera", "0", "--width", "320"],
              lambda s, m: s.captures[0].props[cv2.CAP_PROP_FRAME_WIDTH] == 320),
    "height": (["{fake}", "--camera", "0", "--height", "240"],
               lambda s, m: s.captures[0].props[cv2.CAP_PROP_FRAME_HEIGHT] == 240),
    "fps": (["{fake}", "--camera", "0", "--fps", "12"], lambda s, m: s.captures[0].props[cv2.CAP_PROP_FPS] == 12),
    "video": (["--video", "{clip}"], lambda s, m: s.pipeline.source.path == m["clip"] and _read(s) == CLIP),
    "loop": (["--video", "{clip}", "--loop", "--max-frames", str(CLIP + 2)],
             lambda s, m: s.pipeline.source.loops == 1 and _read(s) == CLIP + 2),
    "url": (["{fake}", "--url", "rtsp://cam.local/stream"],
            lambda s, m: s.captures[0].target == "rtsp://cam.local/stream" and _read(s) == FRAMES),
    "images": ([], lambda s, m: s.pipeline.source.folder == m["images"] and _read(s) == FRAMES),
    "source_list": (["--sources", "{srclist}", "--summary-json", "{summary}"],
                    lambda s, m: [st.name for st in s.pipeline.streams] == ["clip", "images"]
                    and _read(s) == CLIP + FRAMES and "line 5: " in s.log and "gone.mp4" in s.log
                    and list(s.summary()["failed"]) == [f"--sources {m['srclist']} line 5"]
                    and {k: v["processed"] for k, v in s.summary()["streams"].items()} == {"clip": CLIP,
                                                                                          "images": FRAMES}),
    "stdin_raw": (["--stdin-raw", "8x6"],
                  lambda s, m: s.pipeline.source.name.startswith("raw 8x6") and _read(s) == 2),
    "reconnect": (["{fake}", "--camera", "0", "--reconnect", "--max-frames", str(FRAMES + 1)],
                  lambda s, m: isinstance(s.pipeline.source, sources.Reconnecting) and len(s.captures) == 2
                  and s.pipeline.source.reconnects == 1 and _read(s) == FRAMES + 1),
    "backend": (["--backend", "onnxruntime"], lambda s, m: type(s.engine).__name__ == "OnnxRuntimeBackend"),
    "device": (["--device", "NPU.9"], "OpenVINO device 'NPU.9' not found"),  # no such device here: the engine says so
    "precision": (["--precision", "fp16"], lambda s, m: s.pipeline.detector.artifact.path == "model_fp16.xml"),
    "threads": (["--threads", "1"], lambda s, m: s.ov("INFERENCE_NUM_THREADS") == "1"),
    "nireq": (["--nireq", "3"], lambda s, m: s.engine.jobs == 3 == s.pipeline.nireq),
    "hint": (["--hint", "throughput"], lambda s, m: s.ov("PERFORMANCE_HINT") == "THROUGHPUT"),
    "drop": (["--drop"], lambda s, m: s.pipeline.drop is True),
    "save": (["--save", "{save}"],
             lambda s, m: int(cv2.VideoCapture(str(s.files["save"])).get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES),
    "jsonl": (["--jsonl", "{jsonl}"], lambda s, m: [r["frame"] for r in s.jsonl()] == list(range(FRAMES))),
    "show": (["--show"], lambda s, m: "--show ignored" in s.log),
    "max_frames": (["--max-frames", "2"], lambda s, m: _read(s) == 2 and s.pipeline.stopped_by == "max-frames"),
    "duration": (["--video", "{clip}", "--loop", "--duration", "0.5"],
                 lambda s, m: s.pipeline.stopped_by == "duration" and _read(s) > 0),
    "min_score": (["--min-score", "0.1", "--jsonl", "{jsonl}"],  # the tiny model's scores are about 0.08-0.14
                  lambda s, m: 0.1 <= min(_scores(s), default=0) < 0.3),
    "stats_every": (["--video", "{clip}", "--loop", "--duration", "0.6", "--stats-every", "0.1"],
                    lambda s, m: s.log.count(" fps  latency p50 ") >= 2),
    "summary_json": (["--summary-json", "{summary}"], lambda s, m: s.summary()["processed"] == FRAMES),
    "verbose": (["--verbose"], lambda s, m: s.quieted == 0),
}  # fmt: skip


def test_every_option_has_a_case() -> None:
    assert {p.name for p in run_cmd.params} == set(CASES)


@pytest.mark.parametrize("option", sorted(CASES))
def test_option_reaches_its_consumer(option, run, media) -> None:
    args, check = CASES[option]
    stdin = np.arange(2 * 8 * 6 * 3, dtype=np.uint8).tobytes() if option == "stdin_raw" else None
    if isinstance(check, str):
        with pytest.raises(ConfigError, match=check):
            run(*args)
        return
    seen = run(*args, stdin=stdin)
    assert check(seen, media), f"run {option}: {args} did not reach its consumer"


def test_a_check_fails_without_its_option(run, media) -> None:
    """The checks can fail: with the base command alone, the non-default cases do not hold."""
    seen = run("--jsonl", "{jsonl}")
    assert seen.quieted == 1 and len(seen.jsonl()) == FRAMES
    for option in ("backend", "precision", "nireq", "hint", "drop", "max_frames", "min_score", "show", "verbose"):
        assert not CASES[option][1](seen, media), option

