"""Memcheck on the CLI and on a create / detect x N / destroy loop (deploy/c/tests/lh_loop.c, which also runs the
error paths): no byte definitely or indirectly lost, and no memory error at all (deploy/c/valgrind.supp holds the one
suppression, a false report inside glibc's loader). OpenVINO and oneTBB keep some memory reachable until exit; that
is not a leak and is not counted.

Under memcheck, loading OpenVINO costs ~15 s and a frame of the real model ~6 s, so the CI version runs the
synthetic bundle (its graph compiles and runs in milliseconds; a leak in our code shows per frame or per detector
whatever the model); the slow one runs 500 frames, 20 create/destroy cycles and the real model.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from embed_c_lib import DEPLOY_C, FAKE_SIZE, fake_frame, require_tools

H, W = FAKE_SIZE
MEMCHECK = ["valgrind", "--tool=memcheck", f"--suppressions={DEPLOY_C / 'valgrind.supp'}", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--num-callers=24"]  # fmt: skip
SUMMARY = re.compile(r"(definitely lost|indirectly lost|possibly lost|still reachable): ([\d,]+) bytes in ([\d,]+)")


def summary(log: str) -> dict[str, int]:
    """Bytes by leak kind, and ``errors``, from memcheck's summary lines."""
    found = {kind: int(size.replace(",", "")) for kind, size, _ in SUMMARY.findall(log)}
    errors = re.search(r"ERROR SUMMARY: ([\d,]+) errors", log)
    found["errors"] = int(errors[1].replace(",", "")) if errors else -1
    return found


def summary_lines(log: str) -> str:
    keep = ("definitely lost", "indirectly lost", "possibly lost", "still reachable", "ERROR SUMMARY", "total heap")
    return "\n".join(line for line in log.splitlines() if any(k in line for k in keep))


def memcheck(jobs: dict[str, tuple[list[str], Path | None]], tmp_path: Path, timeout: float) -> dict[str, str]:
    """Run the jobs side by side under memcheck (each on its own CPU; valgrind runs one thread at a time); their
    stdout and memcheck logs by name, after asserting that each exited 0."""
    running = {}
    for name, (command, stdin) in jobs.items():
        log = tmp_path / f"{name}.vg"
        stdin_file = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115 - closed below
        proc = subprocess.Popen([*MEMCHECK, f"--log-file={log}", *map(str, command)], stdin=stdin_file,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        running[name] = (proc, log, stdin_file)
    results = {}
    for name, (proc, log, stdin_file) in running.items():
        out, err = proc.communicate(timeout=timeout)
        if stdin_file is not subprocess.DEVNULL:
            stdin_file.close()
        text = log.read_text()
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{err.decode()[-2000:]}\n{text[-6000:]}"
        results[name], results[f"{name}.stdout"] = text, out.decode()
    return results


def assert_clean(name: str, log: str) -> None:
    found = summary(log)
    assert found.get("definitely lost", 0) == 0 and found.get("indirectly lost", 0) == 0, summary_lines(log)
    assert found["errors"] == 0, f"{name}: memcheck errors\n{log[-6000:]}"


def raw_frames(path: Path, count: int) -> Path:
    with path.open("wb") as f:
        for i in range(count):
            f.write(fake_frame(i % 9, seed=i).tobytes())
    return path


def test_memcheck_cli_and_loop(c_build, fake_bundle, tmp_path):
    require_tools("valgrind")
    frames = raw_frames(tmp_path / "frames.raw", 20)
    cli = [c_build.cli, "--model", fake_bundle, "--stdin-raw", f"{W}x{H}", "--min-score", "0"]
    loop = [c_build.loop, fake_bundle, 3, 6, "fp32", 1]
    logs = memcheck({"cli": (cli, frames), "loop": (loop, None)}, tmp_path, timeout=300)
    for name in ("cli", "loop"):
        assert_clean(name, logs[name])
    assert len(logs["cli.stdout"].splitlines()) == 20
    assert logs["loop.stdout"].startswith("cycles 3 frames 6 detections ")


@pytest.mark.slow
def test_memcheck_long_runs(c_build, fake_bundle, assets, tmp_path):
    """500 frames through the CLI, 20 create/destroy cycles of 25 frames, and the real model (2 cycles of 5 frames);
    prints memcheck's summary lines (run with -s to see them)."""
    require_tools("valgrind")
    frames = raw_frames(tmp_path / "frames.raw", 500)
    jobs = {
        "cli_500_frames": ([c_build.cli, "--model", fake_bundle, "--stdin-raw", f"{W}x{H}", "--min-score", "0"],
                           frames),
        "loop_20_cycles": ([c_build.loop, fake_bundle, 20, 25, "fp32", 1], None),
    }  # fmt: skip
    logs = memcheck(jobs, tmp_path, timeout=3600)
    logs.update(memcheck({"real_model": ([c_build.loop, assets.bundle, 2, 5, "fp32", 1], None)}, tmp_path, 3600))
    for name in ("cli_500_frames", "loop_20_cycles", "real_model"):
        print(f"--- {name}\n{summary_lines(logs[name])}")
        assert_clean(name, logs[name])
    assert len(logs["cli_500_frames.stdout"].splitlines()) == 500
