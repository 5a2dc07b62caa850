"""Bad input to the lightheaddetect element fails the pipeline as a GStreamer error: gst-launch exits non-zero,
prints ``ERROR: from element ...lightheaddetect0: <the runtime's cause>``, and no Python traceback; a JSONL it could
not start leaves the old file byte for byte, one it could not finish ends on a complete line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from gst_helpers import DECODE, run

ELEMENT_ERROR = "ERROR: from element /GstPipeline:pipeline0/GstLightheadDetect:lightheaddetect0: "


def launch_failing(env: dict[str, str], clip: Path, element: str) -> str:
    """Run clip -> ``element`` -> fakesink; assert it failed as an element error without a traceback; its output."""
    proc = run(["gst-launch-1.0", *f"filesrc location={clip} ! {DECODE} ! {element} ! fakesink".split()], env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{element} did not fail:\n{out}"
    assert ELEMENT_ERROR in out, out
    assert "Traceback" not in out, out
    return out


def tampered(bundle: Path, tmp_path: Path) -> Path:
    """A copy of ``bundle`` with one byte of its OpenVINO FP32 weights flipped."""
    copy = Path(shutil.copytree(bundle, tmp_path / "tampered"))
    weights = copy / "model_fp32.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("missing", "not found; pass the folder that `lighthead-edge export --out` wrote"),
        ("tampered", "model_fp32.bin was modified after export (sha256 mismatch)"),
        ("backend=tensorrt", "unknown backend 'tensorrt'; choose one of openvino, onnxruntime"),
        ("precision=int8", "has no openvino/int8 artifact"),
        ("threads=-1", "threads=-1 is out of range"),
        ("threshold=1.5", "threshold=1.5 is out of range"),
    ],
)  # fmt: skip
def test_bad_bundle_or_property_fails_naming_the_cause(gst_env, gst_bundle, clip, tmp_path, case, cause):
    """Each fails at start with the runtime's own message; the JSONL named beside it keeps its old content."""
    model = {"missing": tmp_path / "no_bundle", "tampered": tampered(gst_bundle, tmp_path)}.get(case, gst_bundle)
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text('{"frame": 0, "old": true}\n')
    props = [f"model={model}", f"jsonl={jsonl}"]
    props += [] if case in ("missing", "tampered") else [case]
    props += [] if case.startswith("threads") else ["threads=1"]
    out = launch_failing(gst_env, clip, "lightheaddetect " + " ".join(props))
    assert ELEMENT_ERROR + ("bundle " if case in ("missing", "tampered") else "") in out
    assert cause in out, out
    assert jsonl.read_text() == '{"frame": 0, "old": true}\n', "a JSONL was touched by an element that never started"


def test_full_disk_mid_stream_keeps_complete_lines(gst_env, gst_bundle, clip, tmp_path):
    """A JSONL on a 16 KiB tmpfs fills up after a few frames: the pipeline fails naming the path and the disk, and
    the file holds only whole lines, frames 0.. in order. Mounting needs root (as in CI): no mount is a failure."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"can't mount a 16k tmpfs for the full-disk test (needs root): {mounted.stderr.decode().strip()}")
    try:
        jsonl = disk / "out.jsonl"
        out = launch_failing(gst_env, clip, f"lightheaddetect model={gst_bundle} threads=1 jsonl={jsonl}")
        assert f"can't write --jsonl {jsonl}: No space left on device" in out, out
        text = jsonl.read_text()
        assert text.endswith("\n")
        frames = [json.loads(line)["frame"] for line in text.splitlines()]
        assert frames == list(range(len(frames))) and 0 < len(frames) < 30, frames
        assert f"frame {len(frames)}: can't write" in out, "the error names the frame that could not be written"
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
