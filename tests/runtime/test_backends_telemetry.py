"""The runtime's OpenVINO backend imports OpenVINO without its usage event: that import otherwise forks (a
``multiprocessing`` child on a worker thread) inside a process whose threads run, which hung a ``run`` at exit."""

import subprocess
import sys

PROBE = """
import os, threading, time
forks = []
os.register_at_fork(before=lambda: forks.append(1))
os.environ.pop("CI", None)
worker = threading.Thread(target=time.sleep, args=(1.5,))  # a running thread, as the runner's capture threads
worker.start()
from lighthead_edge.runtime.backends import openvino as backend
time.sleep(1.0)  # the usage event is sent from a thread pool: give it the time it would take to fork
print(len(forks), "CI" in os.environ, backend.ov.__version__ != "")
"""


def test_importing_the_openvino_backend_forks_nothing_and_leaves_the_environment():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False", "True"], proc.stdout
