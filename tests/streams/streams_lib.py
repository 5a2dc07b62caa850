"""Helpers of the stream tests (imported by name: pytest puts tests/streams on sys.path): a real RTSP server
(``rtsp_server.py`` under Debian's python3, GStreamer's GstRtspServer) that the tests start, kill, pause and restart
on one port, a silent TCP listener, and the runner as a subprocess."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 30.0  # the first start of a session builds a GStreamer registry


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(registry: Path) -> dict[str, str]:
    """A clean environment for GStreamer: Debian's PATH only (a venv's python3 on PATH gets GStreamer's Python
    plugin loader blacklisted in the registry cache) and a registry of the tests' own."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "GST_REGISTRY": str(registry)}  # fmt: skip


def require_gst_rtsp() -> None:
    """Fail (never skip) with what to install when the server can't run."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: the RTSP tests run GStreamer's RTSP server under Debian's python3")
    done = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        pytest.fail("GStreamer's RTSP server is not importable by /usr/bin/python3; install gir1.2-gst-rtsp-server-1.0 "
                    f"and python3-gi (scripts/setup_system.sh): {done.stderr.strip().splitlines()[-1:]}")  # fmt: skip


@dataclass
class RtspServer:
    """``rtsp_server.py`` on 127.0.0.1:``port``; :meth:`start` (again) serves with the given changes."""

    port: int
    registry: Path
    mount: str = "/cam"
    size: str = "320x240"
    fps: int = 15
    codec: str = "mjpeg"
    auth: str | None = None
    auth_method: str = "basic"
    resize_to: str | None = None
    resize_after: float = 2.0
    proc: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)  # time.time() of each "ready"

    def url(self, credentials: str | None = None, mount: str | None = None) -> str:
        user = f"{credentials}@" if credentials else ""
        return f"rtsp://{user}127.0.0.1:{self.port}{mount or self.mount}"

    def start(self, **changes: Any) -> RtspServer:
        """Serve (after :meth:`kill` or :meth:`stop`, on the same port), with ``changes`` to size, codec, ..."""
        for key, value in changes.items():
            setattr(self, key, value)
        args = [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--port", str(self.port), "--mount", self.mount,
                "--size", self.size, "--fps", str(self.fps), "--codec", self.codec]  # fmt: skip
        args += ["--auth", self.auth, "--auth-method", self.auth_method] if self.auth else []
        args += ["--resize-to", self.resize_to, "--resize-after", str(self.resize_after)] if self.resize_to else []
        log = self.registry.parent / f"rtsp-server-{self.port}.log"  # a file: a pipe nobody reads could fill up
        with log.open("a") as stderr:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                         env=server_env(self.registry), text=True)  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready and self.proc.stdout.readline().strip() == "ready":
                self.starts.append(time.time())
                return self
            if self.proc.poll() is not None:
                break
        self.kill()
        pytest.fail(f"the RTSP server ({self.codec} {self.size}) did not start: {log.read_text().strip()}")

    def kill(self) -> None:
        """SIGKILL, as a camera that loses power: no RTSP TEARDOWN, the TCP connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        """SIGSTOP: the connections stay up and nothing more comes (a hung camera)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a hung device, or not a stream server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def runner_command(*args: object) -> list[str]:
    """``lighthead-edge run ARGS`` through this interpreter: ONNX Runtime at one thread, no periodic stats, unless
    ARGS say otherwise."""
    given = set(map(str, args))
    extra = [] if "--threads" in given else ["--threads", "1"]
    extra += [] if "--stats-every" in given else ["--stats-every", "0"]
    extra += [] if "--backend" in given else ["--backend", "onnxruntime"]
    return [sys.executable, "-m", "lighthead_edge.cli", "run", *map(str, args), *extra]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON (a half-written line fails the test)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate()`` every 50 ms until true; fail naming ``what`` (and the runner's stderr if it ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the runner ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def gaps_in(stamps: list[float], at_least: float) -> list[tuple[float, float]]:
    """(start, seconds) of each pause of ``at_least`` s or more between consecutive capture times."""
    return [(a, b - a) for a, b in zip(stamps, stamps[1:]) if b - a >= at_least]
