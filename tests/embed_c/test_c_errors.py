"""Every error of the C CLI and library: an exit code (or lh_status) and one line that says what is wrong, never an
abort, a traceback-like dump or a half line on stdout. Bundles are checked before loading: a missing, tampered or
truncated file is named; a manifest edited by hand (class names, input shape) is caught against the IR's rt_info."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from embed_c_lib import FAKE_SIZE, CDetector, LhFailure, fake_frame, jsonl, run_cli

from lighthead_edge.runtime.bundle import update_manifest, write_manifest

H, W = FAKE_SIZE
RAW = f"{W}x{H}"
FRAME_BYTES = W * H * 3


def assert_error(result: subprocess.CompletedProcess, code: int, *fragments: str, stdout: bytes = b"") -> str:
    """Exit ``code``, exactly one line on stderr (ours) containing ``fragments``, and ``stdout`` on stdout."""
    err = result.stderr.decode()
    assert result.returncode == code, f"exit {result.returncode}, stderr {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("lighthead_detect: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert result.stdout == stdout
    return err


def frames(count: int) -> bytes:
    return b"".join(fake_frame(5, seed=i).tobytes() for i in range(count))


@pytest.fixture
def bundle_copy(fake_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fake_bundle, tmp_path / "bundle"))


def detect(c_build, bundle: Path, *args: object, input: bytes | None = None) -> subprocess.CompletedProcess:
    return run_cli(
        c_build.cli, "--model", bundle, "--stdin-raw", RAW, *args, input=frames(2) if input is None else input
    )


# ----------------------------------------------------------------------------------------------------- bundles
def test_missing_bundle_folder(c_build, tmp_path):
    assert_error(detect(c_build, tmp_path / "nope"), 5, f"bundle {tmp_path / 'nope'} not found", "export --out")


@pytest.mark.parametrize("which", ["fake", "real"])
def test_tampered_file_is_named(c_build, fake_bundle, assets, tmp_path, which):
    bundle = Path(shutil.copytree(fake_bundle if which == "fake" else assets.bundle, tmp_path / "bundle"))
    weights = bundle / "model_fp32.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(data)
    run = run_cli(c_build.cli, "--model", bundle, "--stdin-raw", "128x128" if which == "real" else RAW)
    assert_error(run, 5, "model_fp32.bin was modified after export (sha256 mismatch)")


def test_tampered_file_of_another_precision_is_refused_too(c_build, bundle_copy):
    """Every file in the manifest is checked, not only the artifact that loads."""
    xml = bundle_copy / "model_fp16.xml"
    xml.write_text(xml.read_text().replace("fake_lighthead", "fake_lightheaD"))
    assert_error(detect(c_build, bundle_copy, "--precision", "fp32"), 5, "model_fp16.xml was modified")


def test_truncated_file(c_build, bundle_copy):
    weights = bundle_copy / "model_fp32.bin"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-10])
    assert_error(detect(c_build, bundle_copy), 5, f"model_fp32.bin is {size - 10} bytes, {size} expected (truncated")


def test_missing_file(c_build, bundle_copy):
    (bundle_copy / "model_fp32.xml").unlink()
    assert_error(detect(c_build, bundle_copy), 5, "is incomplete: model_fp32.xml is missing")


def test_missing_precision_lists_what_exists(c_build, bundle_copy):
    assert_error(detect(c_build, bundle_copy, "--precision", "int8"), 5,
                 "has no openvino/int8 artifact (it has: openvino/fp32, openvino/fp16)")  # fmt: skip


def test_fp32_is_the_default_and_the_first_ir_without_it(c_build, bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["precision"] != "fp32"]
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "fp32" not in k}
    write_manifest(bundle_copy, manifest)
    assert detect(c_build, bundle_copy).returncode == 0  # fp16, the only one
    assert_error(detect(c_build, bundle_copy, "--precision", "fp32"), 5, "no openvino/fp32 artifact")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: m.update(class_names=["cat", "dog", "fish"]), "the manifest's class_names"),
        (lambda m: m["input"].update(shape=[1, 48, 64, 3]), "the manifest's input.shape [1,48,64,3] differs"),
    ],
    ids=["class_names", "input_shape"],
)
def test_manifest_edited_with_a_fresh_digest_is_caught_by_the_ir_metadata(c_build, bundle_copy, edit, fragment):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    edit(manifest)
    write_manifest(bundle_copy, manifest)  # its digest recomputed: only the IR's copy tells
    raw = "64x48" if "shape" in fragment else RAW
    result = run_cli(c_build.cli, "--model", bundle_copy, "--stdin-raw", raw)
    assert_error(result, 5, fragment, "inside model_fp32.xml", "re-export")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "has no manifest.json"),
        ("{not json", "is corrupt (not valid JSON)"),
        ("[1, 2]", "is corrupt (not a JSON object)"),
        ('{"format": "something/else"}', "has format something/else"),
        ('{"format": "lighthead-edge/bundle/3"}', "lacks class_names"),
    ],
    ids=["absent", "not_json", "not_object", "format", "keys"],
)
def test_bad_manifest(c_build, bundle_copy, content, fragment):
    path = bundle_copy / "manifest.json"
    path.unlink() if content is None else path.write_text(content)
    assert_error(detect(c_build, bundle_copy), 5, fragment)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: m.update(class_names=[]), "class_names is not a list of non-empty names"),
        (lambda m: m["input"].update(shape=[1, 24, 32]), "input.shape is not [1, H, W, 3]"),
        (lambda m: m["files"].update({"../escape": {"sha256": "0", "bytes": 1}}), "files is not a map"),
        (lambda m: m["artifacts"][0].update(path="elsewhere.xml"), "path is not one of its checksummed files"),
    ],
    ids=["names", "shape", "file_name", "artifact_path"],
)
def test_manifest_schema(c_build, bundle_copy, edit, fragment):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    edit(manifest)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_error(detect(c_build, bundle_copy), 5, fragment, "re-export")


def test_sha256_agrees_with_hashlib_across_block_boundaries(c_build, bundle_copy):
    """Files of 0..130 bytes (every padding case of SHA-256's 64-byte blocks) and one past the 1 MiB read chunk,
    checksummed by Python: the C check accepts them all, and names the one changed afterwards."""
    rng = np.random.default_rng(0)
    sizes = [*range(0, 131), (1 << 20) + 7]
    names = [f"extra/{size}.dat" for size in sizes]
    (bundle_copy / "extra").mkdir()
    for name, size in zip(names, sizes):
        (bundle_copy / name).write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    manifest = update_manifest(bundle_copy, files=names)
    assert manifest["files"]["extra/0.dat"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert detect(c_build, bundle_copy).returncode == 0
    data = bytearray((bundle_copy / "extra/64.dat").read_bytes())
    data[63] ^= 0x80
    (bundle_copy / "extra/64.dat").write_bytes(data)
    assert_error(detect(c_build, bundle_copy), 5, "extra/64.dat was modified after export")


# ---------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("text", ["", "abc", "640x", "x480", "0x480", "16385x10", "640x480x3", "-1x5", "1e3x5",
                                  "1234567890x5"])  # fmt: skip
def test_bad_stdin_raw(c_build, fake_bundle, text):
    result = run_cli(c_build.cli, "--model", fake_bundle, "--stdin-raw", text, input=frames(1))
    assert_error(result, 2, "--stdin-raw")


def test_stdin_raw_takes_spaces_and_a_capital_x_like_python(c_build, fake_bundle):
    result = run_cli(c_build.cli, "--model", fake_bundle, "--stdin-raw", f" {W} X {H} ", input=frames(1))
    assert result.returncode == 0 and len(jsonl(result.stdout)) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--threads", "0"], "--threads wants an integer 1..1024"),
        (["--threads", "2.5"], "--threads wants an integer"),
        (["--min-score", "1.5"], "--min-score wants a number 0..1"),
        (["--min-score", "nan"], "--min-score wants a number"),
        (["--precision", "fp8"], "--precision wants fp32, fp16 or int8"),
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--threads"], "--threads needs a value"),
        (["extra"], "unexpected argument 'extra'"),
    ],
)
def test_bad_options(c_build, fake_bundle, args, fragment):
    result = run_cli(c_build.cli, "--model", fake_bundle, "--stdin-raw", RAW, *args, input=frames(1))
    assert_error(result, 2, fragment)


def test_model_and_size_are_required(c_build, fake_bundle):
    env = {k: v for k, v in os.environ.items() if k != "LIGHTHEAD_EDGE_BUNDLE"}
    assert_error(run_cli(c_build.cli, "--stdin-raw", RAW, env=env), 2, "give --model BUNDLE")
    assert_error(run_cli(c_build.cli, "--model", fake_bundle, env=env), 2, "give --stdin-raw WxH")
    with_env = run_cli(
        c_build.cli, "--stdin-raw", RAW, input=frames(1), env={**env, "LIGHTHEAD_EDGE_BUNDLE": str(fake_bundle)}
    )
    assert with_env.returncode == 0 and len(jsonl(with_env.stdout)) == 1


def test_unknown_device_is_named_with_the_available_ones(c_build, fake_bundle):
    result = detect(c_build, fake_bundle, "--device", "NOSUCH")
    assert_error(result, 2, "OpenVINO device 'NOSUCH' not found; available: CPU")


def test_help_and_version(c_build):
    assert b"usage: lighthead_detect" in run_cli(c_build.cli, "--help").stdout
    version = run_cli(c_build.cli, "--version")
    assert version.returncode == 0 and version.stdout == b"lighthead_detect 0.1.0\n"


# ------------------------------------------------------------------------------------------------------ frames
def test_wrong_frame_size_is_refused_before_reading(c_build, fake_bundle):
    result = run_cli(c_build.cli, "--model", fake_bundle, "--stdin-raw", "64x48", input=frames(3))
    assert_error(result, 2, "frame is 64x48 but the bundle takes 32x24 frames; export with --frame-size 64x48")


def test_truncated_last_frame(c_build, fake_bundle):
    data = frames(3) + frames(1)[:1000]
    result = detect(c_build, fake_bundle, "--min-score", "0", input=data)
    err = result.stderr.decode()
    assert result.returncode == 3, err
    assert err == f"lighthead_detect: error: truncated frame 3: 1000 of {FRAME_BYTES} bytes\n"
    records = jsonl(result.stdout)  # every earlier line whole and parseable
    assert [r["frame"] for r in records] == [0, 1, 2] and all(len(r["detections"]) == 5 for r in records)


def test_empty_input_is_no_frames(c_build, fake_bundle):
    result = detect(c_build, fake_bundle, input=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_stdin_terminal_is_refused(c_build, fake_bundle):
    parent, child = pty.openpty()
    try:
        result = subprocess.run([str(c_build.cli), "--model", str(fake_bundle), "--stdin-raw", RAW], stdin=child,
                                capture_output=True, timeout=60)  # fmt: skip
    finally:
        os.close(parent)
        os.close(child)
    assert_error(result, 6, "stdin is a terminal")


# ----------------------------------------------------------------------------------------------------- outputs
def test_reader_gone_is_a_quiet_end(c_build, fake_bundle, tmp_path):
    """`lighthead_detect ... | head -1`: EPIPE ends the run with exit 0 and nothing on stderr."""
    source = tmp_path / "frames.raw"
    source.write_bytes(b"".join(fake_frame(8, seed=i % 7).tobytes() for i in range(3000)))
    with source.open("rb") as stdin:
        proc = subprocess.Popen([str(c_build.cli), "--model", str(fake_bundle), "--stdin-raw", RAW, "--min-score", "0"],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        first = proc.stdout.readline()
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
    assert json.loads(first)["frame"] == 0
    assert (proc.returncode, err) == (0, b"")


def test_full_disk_is_exit_7(c_build, fake_bundle):
    with open("/dev/full", "wb") as full:
        result = subprocess.run([str(c_build.cli), "--model", str(fake_bundle), "--stdin-raw", RAW], input=frames(2),
                                stdout=full, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
    result.stdout = b""
    assert_error(result, 7, "can't write to standard output: No space left on device")


def test_sigterm_finishes_the_frame_and_ends_cleanly(c_build, fake_bundle):
    proc = subprocess.Popen([str(c_build.cli), "--model", str(fake_bundle), "--stdin-raw", RAW],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdin.write(frames(2) + frames(1)[:100])  # two frames and the start of a third
    proc.stdin.flush()
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b""
    assert [json.loads(line)["frame"] for line in lines] == [0, 1] and out == b""


# ----------------------------------------------------------------------------------------------------- library
def test_library_errors_are_statuses_with_messages(c_lib, fake_bundle, tmp_path):
    cases = [
        (dict(bundle=None), "LH_ERR_INVALID_ARGUMENT", "no bundle folder given"),
        (dict(bundle=tmp_path / "none"), "LH_ERR_BUNDLE", "not found"),
        (dict(bundle=fake_bundle, threads=-1), "LH_ERR_INVALID_ARGUMENT", "threads is -1"),
        (dict(bundle=fake_bundle, min_score=2.0), "LH_ERR_INVALID_ARGUMENT", "min_score is 2"),
        (dict(bundle=fake_bundle, precision="fp8"), "LH_ERR_INVALID_ARGUMENT", "unknown precision 'fp8'"),
        (dict(bundle=fake_bundle, device="NOSUCH"), "LH_ERR_ENGINE", "device 'NOSUCH' not found"),
    ]
    for kwargs, status, fragment in cases:
        with pytest.raises(LhFailure) as caught:
            CDetector(c_lib, **kwargs)
        assert caught.value.status == status and fragment in caught.value.message, caught.value


def test_library_frame_errors(c_lib, fake_bundle):
    detector = CDetector(c_lib, fake_bundle)
    try:
        frame = fake_frame(3)
        for kwargs, status, fragment in [
            (dict(width=W + 1), "LH_ERR_FRAME_SIZE", f"frame is {W + 1}x{H} but the bundle takes {W}x{H} frames"),
            (dict(stride=W * 3 - 1), "LH_ERR_INVALID_ARGUMENT", f"stride {W * 3 - 1} is less than width * 3"),
            (dict(stride=-5), "LH_ERR_INVALID_ARGUMENT", "stride -5"),
        ]:
            with pytest.raises(LhFailure) as caught:
                detector.detect(frame, **kwargs)
            assert caught.value.status == status and fragment in caught.value.message
        assert len(detector.detect(frame)) == 3  # the detector still works after errors
    finally:
        detector.close()
    c_lib.lh_detector_destroy(None)
    c_lib.lh_detections_free(None)
