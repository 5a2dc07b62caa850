"""Every option of ``tune`` reaches the code that uses it: the quantize runs it makes (their settings recorded, the
run stopped there) and the recorded settings of the search."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lighthead_edge.cli import cli
from lighthead_edge.compress import tune as tune_module


class Stop(Exception):
    """The first quantize run was reached."""


CHECKPOINT = Path(__file__).parents[1] / "export" / "data" / "tiny_synth_128.pt"

# option name -> (arguments, check(the first quantize run's keyword arguments, all budgets tried))
CASES = {
    "checkpoint": ([], lambda q, b: Path(q["checkpoint"]) == CHECKPOINT),
    "val_json": ([], lambda q, b: q["settings"].val_json == "{val}" and q["settings"].bench.val_json == "{val}"),
    "calib": ([], lambda q, b: str(q["calib"]) == "{calib}"),
    "backend": (["--backend", "onnxruntime"], lambda q, b: [x.value for x in q["settings"].backends] == ["onnxruntime"]),  # noqa: E501
    "rois": (["--rois", "3,13"], lambda q, b: q["tune"].rois == (3, 13) and b == [3]),  # the smallest goes first
    "max_drop": (["--max-drop", "0.03"], lambda q, b: q["tune"].max_drop == 0.03),
    "calib_size": (["--calib-size", "5"], lambda q, b: q["settings"].calib_size == 5),
    "selection": (["--selection", "diverse"], lambda q, b: q["settings"].selection.value == "diverse"),
    "threads": (["--threads", "1"], lambda q, b: q["settings"].bench.threads == (1,)),
    "runs": (["--runs", "3"], lambda q, b: q["settings"].bench.runs == 3),
    "out": ([], lambda q, b: Path(q["out"]).parent.parent.name.startswith(".tuned.")),  # inside the hidden folder
    # the cap is set before anything compiles (the quantize runs time and decide under it) and checked by the bench
    "isa": (["--isa", "avx2"], lambda q, b: q["tune"].isa == "avx2" and q["settings"].bench.isa == "avx2"
            and q["env_isa"] == "AVX2"),
    "tie": (["--tie", "0.1"], lambda q, b: q["tune"].tie == 0.1),
}  # fmt: skip


def run_tune(monkeypatch, tmp_path: Path, *args: str) -> tuple[dict, list[int]]:
    seen: dict = {}
    budgets: list[int] = []

    def quantize(checkpoint, out, *, calib, settings, log):
        seen.update(checkpoint=checkpoint, out=out, calib=calib, settings=settings,
                    env_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))  # fmt: skip
        budgets.append(settings.rois)
        raise Stop

    real = tune_module.TuneSettings

    def settings_spy(**kw):
        seen["tune"] = real(**kw)
        return seen["tune"]

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "")  # --isa sets it for the process: undone below, whatever it was
    monkeypatch.setattr(tune_module, "quantize_checkpoint", quantize)
    monkeypatch.setattr(tune_module, "TuneSettings", settings_spy)
    base = ["tune", str(CHECKPOINT), "--val", "{val}", "--calib", "{calib}", "--out", str(tmp_path / "tuned")]
    with pytest.raises(Stop):
        cli.main(args=[*base, *args], standalone_mode=False)
    monkeypatch.undo()
    return seen, budgets


def test_every_option_has_a_case() -> None:
    assert {p.name for p in cli.commands["tune"].params} == set(CASES)


@pytest.mark.parametrize("option", sorted(CASES))
def test_option_reaches_its_consumer(option: str, monkeypatch, tmp_path: Path) -> None:
    args, check = CASES[option]
    seen, budgets = run_tune(monkeypatch, tmp_path, *args)
    assert check(seen, budgets), f"tune {option}: {args} did not reach its consumer"


def test_a_check_fails_without_its_option(monkeypatch, tmp_path: Path) -> None:
    seen, budgets = run_tune(monkeypatch, tmp_path)
    for option in ("backend", "rois", "max_drop", "calib_size", "selection", "threads", "runs", "isa", "tie"):
        assert not CASES[option][1](seen, budgets), option


def test_isa_with_onnxruntime_fails_before_anything_is_capped(monkeypatch, tmp_path: Path) -> None:
    """ONNX Runtime's kernels have no ISA cap: one line naming the remedy, and the process is left uncapped."""
    from lighthead_edge.errors import ConfigError

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    base = ["tune", str(CHECKPOINT), "--val", "v.json", "--calib", "c", "--out", str(tmp_path / "tuned")]
    with pytest.raises(ConfigError, match="no such cap: tune --backend onnxruntime on the target CPU itself"):
        cli.main(args=[*base, "--backend", "onnxruntime", "--isa", "avx2"], standalone_mode=False)
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and not (tmp_path / "tuned").exists()
