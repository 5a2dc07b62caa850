"""Every numeric option of every command, given a generated bad value, is refused by click: exit 2, one line naming
the option, no traceback, no file touched.

The options are enumerated from the click commands (nested groups too), so an option added later is covered: a new
numeric option must declare its range (``click.IntRange``/``FloatRange``, or ``Finite``), and a new command needs
its required arguments in :data:`REQUIRED`. Bad values: below the minimum or above the maximum of the declared range
(or at an open bound), nan and +-inf for floats, a fraction for ints, and text that is no number at all. The
required arguments name missing inputs and outputs under a regular file: a bad value that got past click fails on
them at once (and then the error names them, not the option), instead of starting real work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from hostile import USAGE, check_refused, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

from lighthead_edge.cli import cli as root_command

# {command path: its required arguments}; {m}: a missing path, {o}: a new folder for outputs, {f}: a regular file
# (nothing can be created under it: for the commands that read no input, whose work would start at once)
REQUIRED: dict[str, list[str]] = {
    "data synth": ["--out", "{f}/synth"],
    "data neon-trees": ["--out", "{f}/neon", "--wheel", "{m}/deepforest.whl", "--cache", "{f}/cache"],
    "train": ["--data", "{m}/train.json", "--out", "{o}/model.pt", "--backbone", "tiny"],
    "eval": ["{m}/model.pt", "--data", "{m}/val.json"],
    "info": ["{m}/model.pt"],
    "export": ["{m}/model.pt", "--out", "{o}/bundle"],
    "run": ["--model", "{m}/bundle", "--images", "{m}/images"],
    "demo": ["--out", "{f}/demo"],
    "prune": ["{m}/model.pt", "--data", "{m}/train.json", "--out", "{o}/pruned.pt"],
    "quantize": ["{m}/model.pt", "--calib", "{m}/calib.json", "--out", "{o}/bundle"],
    "bench": ["{m}/bundle"],
    "tune": ["{m}/model.pt", "--val", "{m}/val.json", "--calib", "{m}/calib.json", "--out", "{o}/bundle"],
    "serve": ["--model", "{m}/bundle", "--frigate", "ipc://{o}/frigate.sock"],
}
# options of type string that hold numbers: (command, option) -> values that are no valid value
NUMERIC_TEXT: dict[tuple[str, str], list[str]] = {
    ("bench", "--threads"): ["0", "-1", "1,0", "nan", "inf", "1.5", "a", "", ",", "1,,2", "99999999999999999"],
    ("train", "--anchor-scales"): ["", "a", "nan", "inf", "-1", "0", "2,,4", "2,-4", "1e400", ","],
    ("run", "--stdin-raw"): ["", "0x0", "-5x10", "10x-5", "axb", "10", "10x", "nanxnan", "99999999x99999999", "1.5x2",
                             "10x10@", "@fifo"],
    ("tune", "--rois"): ["", "a", "nan", "inf", "0", "-1", "2,,4", ",", "1.5", "100001"],
}


def commands(group: click.Group = root_command, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, path + " ")
        else:
            yield path, command


def is_numeric(param: click.Parameter) -> bool:
    return isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))


NUMERIC = [(path, p) for path, command in commands() for p in command.params if is_numeric(p)]


def test_every_numeric_option_declares_its_range() -> None:
    ranges = (click.IntRange, click.FloatRange)
    unranged = [f"{path} {p.opts[0]}" for path, p in NUMERIC
                if not isinstance(p.type, ranges) or (p.type.min is None and p.type.max is None)]  # fmt: skip
    assert not unranged, f"numeric options without a range in click: {unranged}"
    assert len(NUMERIC) >= 50  # the enumeration finds the options (there were 58 when this was written)
    assert not [path for path, _ in commands() if path not in REQUIRED], "a new command: add it to REQUIRED"


def bad_numbers(param: click.Parameter) -> st.SearchStrategy[str]:
    """Text that the option must refuse: out of its declared range, not finite, not of its kind, not a number."""
    kind = param.type
    is_int = isinstance(kind, click.types.IntParamType)
    bad = [st.sampled_from(["", "abc", "1,5", "0x10", "--", "1e", "one", "5%", "1 2"])]
    if is_int:
        bad.append(st.sampled_from(["1.5", "-0.5", "nan", "inf", "1e3"]))
    else:
        bad.append(st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400"]))
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    finite = {"allow_nan": False, "allow_infinity": False}
    if low is not None and is_int:
        bad.append(st.integers(-(10**20), low - 1).map(str))
    elif low is not None:  # below the minimum, or at it when the range is open there
        bad.append(st.floats(max_value=low, exclude_max=not kind.min_open, **finite).map(repr))
    if high is not None and is_int:
        bad.append(st.integers(high + 1, high + 10**20).map(str))
    elif high is not None:
        bad.append(st.floats(min_value=high, exclude_min=not kind.max_open, **finite).map(repr))
    if low is None and high is None:  # no declared range (the test above fails): negative and huge are bad anyway
        bad.append(st.sampled_from(["-1", "-1000", "1" + "0" * 40]))
    return st.one_of(bad)


def required_args(path: str, option: str, ex: Path) -> list[str]:
    blocker = ex / "file"
    blocker.write_text("a user's file\n")
    args = [a.format(m=ex / "missing", o=ex / "outputs", f=blocker) for a in REQUIRED[path]]
    if path == "run" and option in ("--camera", "--stdin-raw"):  # the option is the source
        args = args[:2]
    return [*path.split(), *args]


@pytest.mark.parametrize("path, param", NUMERIC, ids=[f"{path} {p.opts[0]}" for path, p in NUMERIC])
@examples(3)
@given(draw=st.data())
def test_bad_number_is_refused_in_one_line(cli, tmp_path: Path, path: str, param: click.Parameter, draw) -> None:
    ex = scratch(tmp_path)
    value = draw.draw(bad_numbers(param), label=param.opts[0])
    args = [*required_args(path, param.opts[0], ex), param.opts[0], value]
    line = check_refused(cli, args, [tmp_path], codes=[USAGE])
    assert any(opt in line for opt in param.opts), f"{args}: the error does not name the option: {line}"
    discard(ex)


@pytest.mark.parametrize("path, option", sorted(NUMERIC_TEXT), ids=[" ".join(k) for k in sorted(NUMERIC_TEXT)])
@examples(4)
@given(draw=st.data())
def test_bad_numbers_in_text_options(cli, tmp_path: Path, path: str, option: str, draw) -> None:
    ex = scratch(tmp_path)
    value = draw.draw(st.sampled_from(NUMERIC_TEXT[(path, option)]), label=option)
    args = [*required_args(path, option, ex), option, value]
    line = check_refused(cli, args, [tmp_path], codes=[USAGE])
    assert option in line, f"{args}: the error does not name the option: {line}"
    discard(ex)
