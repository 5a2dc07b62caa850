"""The installed folder (``bash deploy/c/build.sh PREFIX``: ``cmake --install``) runs on its own: copied elsewhere and
run with a clean environment (``env -i PATH=...``), nothing resolves from the venv, and a program compiled against its
header and library (deploy/c/tests/example.c, the README's example) works."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from embed_c_lib import DEPLOY_C, FAKE_SIZE, fake_frame, jsonl, require_tools, run_cli, without_timestamps

H, W = FAKE_SIZE
CLEAN = ["env", "-i", "PATH=/usr/bin:/bin"]
NEEDED = ["bin/lighthead_detect", "include/lighthead.h", "lib/liblighthead.so", "lib/libcjson.so.1",
          "lib/libopenvino_intel_cpu_plugin.so", "lib/libtbb.so.12"]  # fmt: skip
NEEDED_GLOBS = ["lib/libopenvino_c.so.*", "lib/libopenvino.so.*", "lib/libopenvino_ir_frontend.so.*"]


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def moved(c_build, tmp_path_factory) -> Path:
    """The installed folder, copied to another place (its RPATHs are relative: $ORIGIN)."""
    return Path(shutil.copytree(c_build.prefix, tmp_path_factory.mktemp("copied") / "lighthead", symlinks=True))


def test_installed_folder_has_what_runs(moved):
    for name in NEEDED:
        assert (moved / name).exists(), name
    for pattern in NEEDED_GLOBS:
        assert list(moved.glob(pattern)), pattern
    size = folder_bytes(moved)
    print(f"installed folder: {size / 2**20:.1f} MiB")
    assert size < 150 * 2**20  # the CPU plugin (61 MiB) and libopenvino (20 MiB) are most of it


def test_installed_cli_runs_with_a_clean_environment(c_build, moved, fake_bundle):
    frames = b"".join(fake_frame(n, seed=n).tobytes() for n in range(6))
    args = ["--model", fake_bundle, "--stdin-raw", f"{W}x{H}", "--min-score", "0"]
    clean = subprocess.run([*CLEAN, str(moved / "bin/lighthead_detect"), *map(str, args)], input=frames,
                           capture_output=True, timeout=120)  # fmt: skip
    assert clean.returncode == 0, clean.stderr.decode()
    reference = run_cli(c_build.cli, *args, input=frames)
    assert without_timestamps(jsonl(clean.stdout)) == without_timestamps(jsonl(reference.stdout))


def test_nothing_resolves_outside_the_folder_but_the_system(moved, fake_bundle):
    """ldd, and the libraries OpenVINO loads by name at run time (the CPU plugin, the IR frontend): all from the
    folder or the system's /lib, none from the venv."""
    ldd = subprocess.run([*CLEAN, "ldd", str(moved / "bin/lighthead_detect")], capture_output=True, text=True)
    assert ldd.returncode == 0 and "not found" not in ldd.stdout, ldd.stdout
    frame = fake_frame(2).tobytes().decode("latin-1")  # text mode, for the loader's trace on stderr
    traced = subprocess.run([*CLEAN, "LD_DEBUG=libs", str(moved / "bin/lighthead_detect"), "--model",
                             str(fake_bundle), "--stdin-raw", f"{W}x{H}"], input=frame, capture_output=True,
                            text=True, encoding="latin-1", timeout=120)  # fmt: skip
    assert traced.returncode == 0
    loaded = {line.split("init: ")[1] for line in traced.stderr.splitlines() if "calling init: " in line}
    ours = {Path(p).name for p in loaded if p.startswith(str(moved))}
    assert {"libopenvino_intel_cpu_plugin.so", "liblighthead.so.0", "libtbb.so.12"} <= ours, sorted(loaded)
    outside = [p for p in loaded if not p.startswith((str(moved), "/lib", "/usr/lib"))]
    assert not outside, outside


def test_example_compiles_against_the_installed_header_and_runs(moved, fake_bundle, tmp_path):
    require_tools("cc")
    example = tmp_path / "example"
    compile_ = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
                               str(DEPLOY_C / "tests/example.c"), f"-I{moved / 'include'}", f"-L{moved / 'lib'}",
                               "-llighthead", f"-Wl,-rpath,{moved / 'lib'}", "-o", str(example)],
                              capture_output=True, text=True)  # fmt: skip
    assert compile_.returncode == 0, compile_.stderr
    frame = tmp_path / "frame.raw"
    frame.write_bytes(fake_frame(4, seed=1).tobytes())
    run = subprocess.run([*CLEAN, str(example), str(fake_bundle), str(frame)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 4
    missing = subprocess.run([*CLEAN, str(example), str(fake_bundle / "nope"), str(frame)], capture_output=True,
                             text=True)  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.startswith("LH_ERR_BUNDLE: bundle ")


def test_header_is_usable_from_cpp(moved, tmp_path):
    """The header has C linkage guards (the library itself is C)."""
    if shutil.which("c++") is None:
        pytest.fail("c++ not found; install g++ (scripts/setup_system.sh)")
    source = tmp_path / "use.cpp"
    source.write_text("#include <lighthead.h>\nint main() { lh_options o = lh_options_default(); return o.threads; }\n")
    result = subprocess.run(["c++", "-Wall", "-Werror", str(source), f"-I{moved / 'include'}", f"-L{moved / 'lib'}",
                             "-llighthead", f"-Wl,-rpath,{moved / 'lib'}", "-o", str(tmp_path / "use")],
                            capture_output=True, text=True, env={**os.environ})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert subprocess.run([*CLEAN, str(tmp_path / "use")]).returncode == 0
