"""Shared parts of the property-based CLI suite (issue 16): Hypothesis settings, the file snapshot and the check that
a failed command answered as documented.

The suite drives ``lighthead-edge`` in-process (the ``cli`` fixture of ``tests/conftest.py``) with generated bad
input, and every property is the same: a non-zero exit with the code documented for the cause, exactly one non-empty
line on stderr (``run`` may print its ``running ...`` line first), no traceback, and every file that was there before
(the test's folders and the shared assets) byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from exported import CHECKPOINT  # tests/ is on sys.path (pytest rootdir mode)
from hypothesis import HealthCheck, Phase, settings

# The exit codes of the CLI by cause (README, "Exit codes"); 1 is only for what no class covers.
USAGE, DATA, CHECKPOINT_CODE, BUNDLE, SOURCE, OUTPUT = 2, 3, 4, 5, 6, 7
SCALE = max(1, int(os.environ.get("LIGHTHEAD_ROBUSTNESS_SCALE", "1")))  # >1: more examples, for a deeper local run


def examples(n: int) -> settings:
    """Hypothesis settings for one property: ``n`` examples (times ``$LIGHTHEAD_ROBUSTNESS_SCALE``), reproducible
    (derandomized, no example database), no deadline, and no shrinking (a failure is reported as first found: each
    example runs the CLI, and shrinking would rerun it many times)."""
    return settings(
        max_examples=n * SCALE, deadline=None, derandomize=True, database=None, print_blob=False,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip


@dataclass(frozen=True)
class World:
    """What the bad inputs are made from (the ``world`` fixture). ``roots`` are what must never change."""

    root: Path
    data: Path  # train.json, val.json, images/
    model: Path  # a copy of the tiny trained checkpoint (classes circle, square, triangle, star)

    @property
    def train_json(self) -> Path:
        return self.data / "train.json"

    @property
    def val_json(self) -> Path:
        return self.data / "val.json"

    @property
    def roots(self) -> list[Path]:
        return [self.root, CHECKPOINT]


@dataclass(frozen=True)
class BundleWorld:
    """A private copy of the shared bundle, a folder with one frame (``bundle_world``), and what must never change."""

    bundle: Path
    frames: Path
    roots: list[Path]


# --------------------------------------------------------------------------------------------------------- files
def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file under ``roots`` (a root may be a file); symbolic links are not followed."""
    files: list[Path] = []
    for root in roots:
        if root.is_file() and not root.is_symlink():
            files.append(root)
            continue
        for folder, _, names in os.walk(root):
            files += [Path(folder) / n for n in names if stat.S_ISREG(os.lstat(Path(folder) / n).st_mode)]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def changed(before: dict[str, str], roots: Iterable[Path]) -> list[str]:
    """The files of ``before`` that are gone or whose content changed (new files are not counted)."""
    after = snapshot(*roots)
    return [f"{p} {'deleted' if p not in after else 'modified'}" for p, h in before.items() if after.get(p) != h]


def scratch(parent: Path) -> Path:
    """A new empty folder for one example (function-scoped ``tmp_path`` is shared by all of a test's examples)."""
    return Path(tempfile.mkdtemp(prefix="ex", dir=parent))


def discard(folder: Path) -> None:
    """Remove an example's folder (read-only bits and all) once it has been checked."""
    for sub, dirs, _ in os.walk(folder):
        for d in dirs:
            os.chmod(Path(sub) / d, 0o755)
    shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------- answers
def _stderr_lines(err: str) -> list[str]:
    # a progress bar redraws with \r and clears itself; what stays on screen is everything else
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]


def check_refused(
    call: Callable[..., tuple[int, str, str]], args: Sequence[object], roots: Sequence[Path], *,
    codes: Iterable[int], running_line: bool = False, may_succeed: bool = False,
    also: Callable[[], list[str]] | None = None,
) -> str:  # fmt: skip
    """Run ``lighthead-edge *args`` through ``call`` (the ``cli`` fixture) and check the property of the suite:
    exit code in ``codes``, one stderr line (after a ``running ...`` line if ``running_line``), no traceback, every
    file under ``roots`` unchanged, and ``also()`` (more problems, as text) empty. With ``may_succeed`` (an input a
    command may accept, such as a user file beside its output), exit 0 is also fine if no file changed. Returns the
    error line ("" after a success)."""
    before = snapshot(*roots)
    args = [str(a) for a in args]
    command = "lighthead-edge " + " ".join(repr(a) if not a or set(a) & set(" \t'\"$*?\n") else a for a in args)
    try:
        code, out, err = call(*args)
    except BaseException as exc:  # anything the entry point lets through is a traceback for the user
        lost = changed(before, roots)
        raise AssertionError(f"{command}\n  uncaught {type(exc).__name__}: {exc}\n  changed: {lost}") from exc
    problems = changed(before, roots) + (also() if also is not None else [])
    lines = _stderr_lines(err)
    if running_line and len(lines) == 2 and lines[0].startswith("running"):
        lines = lines[1:]
    if code != 0 or not may_succeed:
        if code not in set(codes):
            problems.append(f"exit {code}, expected {sorted(set(codes))}")
        if "Traceback" in out + err:
            problems.append("a traceback")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
    if problems:
        raise AssertionError(f"{command}\n  " + "; ".join(problems) + f"\n  stderr: {err[-1500:]!r}\n  stdout: "
                             f"{out[-300:]!r}")  # fmt: skip
    return lines[0] if code != 0 else ""


# ---------------------------------------------------------------------------------------------------- /dev/full
DEV_FULL = Path("/dev/full")


def dev_state() -> tuple[int | None, set[str]]:
    """/dev/full's device number (None unless it is a character device) and the names in /dev."""
    st = os.lstat(DEV_FULL)
    return (st.st_rdev if stat.S_ISCHR(st.st_mode) else None), set(os.listdir(DEV_FULL.parent))


def dev_damage(before: tuple[int | None, set[str]]) -> list[str]:
    """What a command did to /dev (a root user's writes can replace /dev/full by a regular file, or add files
    beside it); the damage is undone (as root) so that the host keeps its full device, and returned as text."""
    rdev, names = before
    now_rdev, now_names = dev_state()
    problems = [f"left /dev/{n}" for n in sorted(now_names - names)]
    for name in now_names - names:
        Path(DEV_FULL.parent / name).unlink(missing_ok=True)
    if rdev is not None and now_rdev != rdev:
        problems.append("replaced the device /dev/full by a regular file")
        DEV_FULL.unlink()
        os.mknod(DEV_FULL, 0o666 | stat.S_IFCHR, rdev)
        os.chmod(DEV_FULL, 0o666)
    return problems
