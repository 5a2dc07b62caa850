"""The runner on a device without the toolchain: torch (and everything that needs it) can't be imported.

The fast test blocks those imports in a subprocess; the slow one installs the package into a fresh venv with only
its runtime dependencies (deploy/install_runtime.sh, from the package index) and runs a bundle on a video there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs `lighthead-edge run ARGS` with every toolchain import failing as if it weren't installed.
BLOCKED_RUN = """
import importlib.abc, os, sys
TOOLCHAIN = ("torch", "torchvision", "nncf", "onnx", "onnxscript", "onnxslim", "torch_pruning", "pycocotools",
             *filter(None, os.environ.get("BLOCK_ALSO", "").split(",")))  # an engine, as on a one-engine device
OURS = ("lighthead_edge.modeling", "lighthead_edge.ops", "lighthead_edge.compress", "lighthead_edge.train",
        "lighthead_edge.evaluate", "lighthead_edge.export.")  # export.commands is click only: the CLI imports it
def blocked(name):
    ours = name.startswith(OURS) and name != "lighthead_edge.export.commands"
    return ours or name.split(".")[0] in TOOLCHAIN
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"{name} is not on this device")
sys.meta_path.insert(0, Block())
sys.argv = ["lighthead-edge", "run", *sys.argv[1:]]
from lighthead_edge.cli import main
try:
    main()
finally:
    leaked = sorted(m for m in sys.modules if blocked(m))
    print("LEAKED", leaked, file=sys.stderr)
"""


def test_runner_works_without_torch(isolated_env, tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    for backend in ("openvino", "onnxruntime"):
        cmd = [sys.executable, "-c", BLOCKED_RUN, "--model", str(tiny_bundle), "--video", str(video_mp4),
               "--backend", backend, "--threads", "1", "--max-frames", "5", "--save", str(tmp_path / "o.mp4"),
               "--jsonl", str(tmp_path / "o.jsonl")]  # fmt: skip
        proc = subprocess.run(cmd, env=isolated_env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        stderr = proc.stderr.decode()
        assert proc.returncode == 0, stderr
        assert "LEAKED []" in stderr and "summary: 5 frames" in stderr
        assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_device_with_one_engine(engine, isolated_env, tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    """With only ``engine`` installed (the other can't be imported), run uses it by default, and asking for the
    missing one is one line naming the extra to install, exit 2."""
    missing = "onnxruntime" if engine == "openvino" else "openvino"
    env = {**isolated_env, "BLOCK_ALSO": missing}
    base = [sys.executable, "-c", BLOCKED_RUN, "--model", str(tiny_bundle), "--video", str(video_mp4), "--threads", "1",
            "--max-frames", "3", "--jsonl", str(tmp_path / "o.jsonl")]  # fmt: skip
    proc = subprocess.run(base, env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "LEAKED []" in proc.stderr.decode() and len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    proc = subprocess.run([*base, "--backend", missing], env=env, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    lines = [line for line in proc.stderr.decode().splitlines() if not line.startswith("LEAKED")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    assert lines == [f"error: {missing} is not installed here: pip install 'lighthead-edge[{missing}]', or use "
                     f"--backend {engine}"], lines  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_fresh_runtime_only_venv(engine, tiny_bundle: Path, video_mp4: Path, tmp_path: Path) -> None:
    """deploy/install_runtime.sh --engine ENGINE into an empty venv (wheels from the package index), then a run there
    with that engine alone; prints the venv's size (the device's footprint)."""
    venv = tmp_path / "venv"
    script = REPO / "deploy" / "install_runtime.sh"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(script), "--engine", engine, str(venv), str(REPO)], env=env,
                          capture_output=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    summary = tmp_path / "s.json"
    run = [str(venv / "bin" / "lighthead-edge"), "run", "--model", str(tiny_bundle), "--video", str(video_mp4),
           "--threads", "1", "--jsonl", str(tmp_path / "o.jsonl"), "--summary-json", str(summary)]  # fmt: skip
    proc = subprocess.run(run, env=env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(summary.read_text())["processed"] == 40
    pip_list = subprocess.run([str(venv / "bin" / "pip"), "list"], capture_output=True, text=True).stdout.lower()
    other = "onnxruntime" if engine == "openvino" else "openvino"
    assert "torch" not in pip_list and "nncf" not in pip_list and other not in pip_list and engine in pip_list
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
    print(f"runtime venv with {engine} alone: {size} MB")
    shutil.rmtree(venv, ignore_errors=True)
