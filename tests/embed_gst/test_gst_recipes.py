"""The deploy/ recipes run for real with Debian's ffmpeg and GStreamer and ``lighthead-edge`` from the venv first on
PATH (as with an activated venv): one JSON line per frame of a file, numbered from 0, with the Python runtime's
detections on the same frames decoded by the same tool."""

from __future__ import annotations

import json
import subprocess

from gst_helpers import FRAMES, HEIGHT, REPO, WIDTH, assert_jsonl_matches, gst_ok, read_raw, run

RUN_OPTIONS = ["--", "--threads", "1", "--min-score", "0"]


def recipe(env: dict[str, str], *args: object, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run a deploy/ script with bash; assert it succeeded and wrote nothing but JSON lines on stdout."""
    proc = run(["bash", *map(str, args)], env, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def parse(stdout: str) -> list[dict]:
    assert stdout.endswith("\n"), "stdout does not end on a complete line"
    return [json.loads(line) for line in stdout.splitlines()]


def test_ffmpeg_to_jsonl_every_frame_of_a_file(recipe_env, gst_bundle, clip, expected, tmp_path):
    """ffmpeg_to_jsonl.sh CLIP BUNDLE 160 120: ffmpeg's frames (decoded again the same way, for the reference)."""
    raw = tmp_path / "ffmpeg.bgr"
    frames = run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(clip), "-an", "-sn",
                  "-fps_mode", "passthrough", "-vf", f"scale={WIDTH}:{HEIGHT}", "-pix_fmt", "bgr24", "-f", "rawvideo",
                  str(raw)], recipe_env)  # fmt: skip
    assert frames.returncode == 0, frames.stderr
    want = expected(read_raw(raw, WIDTH, HEIGHT))
    assert len(want) == FRAMES
    proc = recipe(recipe_env, REPO / "deploy" / "ffmpeg_to_jsonl.sh", clip, gst_bundle, WIDTH, HEIGHT, *RUN_OPTIONS)
    assert_jsonl_matches(parse(proc.stdout), want)


def test_gstreamer_sh_every_frame_of_a_file(gst_env, recipe_env, gst_bundle, clip, expected, tmp_path):
    """gstreamer.sh --size 160x120 BUNDLE CLIP: GStreamer's decode and conversion, and no plugin blacklisted in the
    registry although the venv is first on PATH (the recipe keeps it off gst-launch's PATH)."""
    raw = tmp_path / "gst.bgr"
    gst_ok(gst_env, f"filesrc location={clip} ! decodebin ! videoconvert ! videoscale ! "
                       f"video/x-raw,format=BGR,width={WIDTH},height={HEIGHT} ! filesink location={raw}")  # fmt: skip
    want = expected(read_raw(raw, WIDTH, HEIGHT))
    proc = recipe(recipe_env, REPO / "deploy" / "gstreamer.sh", "--size", f"{WIDTH}x{HEIGHT}", gst_bundle, clip,
                  *RUN_OPTIONS)  # fmt: skip
    assert_jsonl_matches(parse(proc.stdout), want)
    blacklist = run(["gst-inspect-1.0", "-b"], recipe_env)
    assert "Total count: 0 blacklisted files" in blacklist.stdout, blacklist.stdout


def test_gstreamer_sh_source_fragment(gst_env, recipe_env, gst_bundle, expected, tmp_path):
    """gstreamer.sh --source 'videotestsrc ...' (a pipeline fragment instead of a camera): one line per frame."""
    source = "videotestsrc num-buffers=12 pattern=smpte"
    raw = tmp_path / "test.bgr"
    gst_ok(gst_env, f"{source} ! videoconvert ! videoscale ! video/x-raw,format=BGR,width={WIDTH},height={HEIGHT} "
                       f"! filesink location={raw}")  # fmt: skip
    want = expected(read_raw(raw, WIDTH, HEIGHT))
    proc = recipe(recipe_env, REPO / "deploy" / "gstreamer.sh", "--size", f"{WIDTH}x{HEIGHT}", "--source", source,
                  gst_bundle, *RUN_OPTIONS)  # fmt: skip
    assert_jsonl_matches(parse(proc.stdout), want)


def test_recipes_pass_on_the_runners_exit_code(recipe_env, clip, tmp_path):
    """A bundle that isn't there: lighthead-edge's one-line cause and its exit code 5 come out of both recipes."""
    for script in ("ffmpeg_to_jsonl.sh", "gstreamer.sh"):
        proc = run(["bash", str(REPO / "deploy" / script), *([clip, tmp_path / "nope"] if script.startswith("ff")
                    else [tmp_path / "nope", clip])], recipe_env)  # fmt: skip
        assert proc.returncode == 5, f"{script}: {proc.returncode}\n{proc.stderr}"
        assert f"error: bundle {tmp_path / 'nope'} not found" in proc.stderr and proc.stdout == ""
