"""``lighthead-edge tune``: RoI budgets x FP32/INT8 measured on this CPU, the fastest point within the AP budget
written as the bundle, with its report and plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from exported import ExportedAssets

from lighthead_edge.compress.tune import Point, choose, pareto
from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.bundle import load_bundle
from lighthead_edge.runtime.detector import Detector

CHECKPOINT = Path(__file__).parents[1] / "export" / "data" / "tiny_synth_128.pt"
BENCH_COMPRESS = Path(__file__).parents[2] / "scripts" / "bench_compress.py"


def test_pareto_front() -> None:
    pts = [Point(10, "int8", 0.30, 0.5, 10.0), Point(10, "fp32", 0.32, 0.5, 20.0), Point(50, "int8", 0.29, 0.5, 15.0),
           Point(50, "fp32", 0.35, 0.5, 30.0), Point(100, "fp32", 0.34, 0.5, 40.0)]  # fmt: skip
    assert [(p.rois, p.precision) for p in pareto(pts)] == [(10, "int8"), (10, "fp32"), (50, "fp32")]


def test_choose_takes_the_best_ap_among_points_tied_with_the_fastest() -> None:
    """The pruned NEON model's search under the AVX2 cap: int8 @100 17.2 ms, int8 @300 17.3 ms 0.6 points higher."""
    ref = Point(300, "fp32", 0.2180, 0.58, 18.3)
    at100, at300, at50 = Point(100, "int8", 0.2087, 0.54, 17.2), Point(300, "int8", 0.2148, 0.57, 17.3), \
        Point(50, "fp32", 0.1924, 0.52, 16.0)  # fmt: skip
    points = [ref, at100, at300, at50]
    assert choose(points, ref, 0.01, 0.03) == (at300, at100)  # at50 is faster but over the AP budget
    assert choose(points, ref, 0.01, 0.0) == (at100, at100)  # --tie 0: the fastest, always
    assert choose(points, ref, 0.01, 0.005) == (at100, at100)  # 17.3 ms is 0.6% over 17.2: not within 0.5%
    slow = Point(300, "int8", 0.2148, 0.57, 17.9)  # 4% slower than int8 @100: not a tie at 3%
    assert choose([ref, at100, slow], ref, 0.01, 0.03) == (at100, at100)
    same_ap = Point(200, "int8", 0.2087, 0.55, 17.25)  # equal AP: the quicker of the tied points
    assert choose([ref, same_ap, at100], ref, 0.01, 0.03)[0] is at100
    assert choose([ref], ref, 0.01, 0.03) == (ref, ref)  # the reference is always within the budget


def test_tune_writes_the_fastest_bundle_within_budget(tuned) -> None:
    """The session's one real tune run (``tuned`` in conftest.py) on the tiny checkpoint."""
    code, stdout, err, out, schedules = tuned.code, tuned.stdout, tuned.err, tuned.out, tuned.schedules
    assert code == 0, err
    report = json.loads((out / "tune.json").read_text())
    points, reference, chosen = report["points"], report["reference"], report["chosen"]
    own = reference["rois"]
    assert {p["rois"] for p in points} == {8, 30, own} and reference["precision"] == "fp32"
    assert {(p["rois"], p["precision"]) for p in points if not p["accuracy_control"]} == {
        (r, q) for r in (8, 30, own) for q in ("fp32", "int8")}  # fmt: skip
    ok = [p for p in points if reference["ap"] - p["ap"] <= 0.02]
    assert chosen["latency_ms"] == min(p["latency_ms"] for p in ok) and chosen in [
        {k: v for k, v in p.items()} for p in ok]  # fmt: skip
    # every point's latency is the last joint schedule's figure for it, and that schedule timed all of them
    assert schedules and set(schedules[-1]) == {p["label"] for p in points}
    assert all(p["latency_ms"] == schedules[-1][p["label"]]["1"]["p50"] for p in points)
    assert all(p["own_run_ms"] > 0 for p in points)  # the quantize run's own figure is kept beside it
    bundle = load_bundle(out)  # every checksum, the tune files' included
    assert {"tune.md", "tune.json", "tune.png"} <= set(bundle.manifest["files"])
    assert bundle.manifest["tune"]["chosen"]["label"] == chosen["label"]
    assert report["settings"] == {**bundle.manifest["tune"]["settings"], "calib_size": 4, "runs": 3, "threads": 1,
                                  "rois": [8, 30], "backend": "onnxruntime", "max_drop": 0.02}  # every setting used
    assert bundle.manifest["postprocessing"]["rois"] == chosen["rois"]  # the chosen budget is the graph's
    assert not (out / ".tune").exists() and (out / "tune.png").stat().st_size > 5000
    det = Detector(out, backend="onnxruntime", precision=chosen["precision"], threads=1)
    assert det.artifact.precision.value == chosen["precision"]
    md = (out / "tune.md").read_text()
    assert f"**Chosen: {chosen['label']}**" in md and "| Pareto |" in md
    assert f"bundle: {out}" in stdout


def _bench_compress():
    spec = importlib.util.spec_from_file_location("bench_compress", BENCH_COMPRESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_compress_names_which_model_a_tuned_row_was_tuned_from(tuned, tmp_path: Path) -> None:
    """By the tuned bundle's source sha256: --checkpoint's -> tuned-, --pruned's -> pruned-tuned-, else the name."""
    assert tuned.code == 0, tuned.err
    chosen = json.loads((tuned.out / "tune.json").read_text())["chosen"]
    point = f"{chosen['precision']}@{chosen['rois']}"
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the tuned model")
    rows = _bench_compress()._tuned_variants([tuned.out, tuned.out], str(other), str(CHECKPOINT))
    assert [key for key, _, _ in rows] == [f"onnxruntime/pruned-tuned-{point}", f"onnxruntime/pruned-tuned-{point}:2"]
    assert rows[0][2].precision.value == chosen["precision"] and rows[0][1].root == tuned.out
    (key, _, _), = _bench_compress()._tuned_variants([tuned.out], str(other), None)
    assert key == f"onnxruntime/tuned-{point}:{CHECKPOINT.name}"


def test_bench_compress_refuses_a_bundle_tune_did_not_write(assets: ExportedAssets, tmp_path: Path) -> None:
    data = str(assets.val_json)
    with pytest.raises(SystemExit, match="not a bundle written by `lighthead-edge tune`"):
        _bench_compress().main(["--checkpoint", str(CHECKPOINT), "--val", data, "--calib", data, "--no-prune",
                                "--tuned", str(assets.bundle), "--out", str(tmp_path / "bench")])  # fmt: skip
    assert not (tmp_path / "bench" / "report.json").exists()


@pytest.mark.parametrize(("args", "match"), [(["--rois", "0,10"], "--rois"), (["--max-drop", "2"], "--max-drop")])
def test_bad_tune_options_are_one_line(cli, assets: ExportedAssets, tmp_path: Path, args, match) -> None:
    code, _, err = cli("tune", CHECKPOINT, "--val", assets.val_json, "--calib", assets.val_json, *args,
                       "--out", tmp_path / "b")  # fmt: skip
    assert code == 2 and match in err and "Traceback" not in err and not (tmp_path / "b").exists()


def test_a_capped_search_names_its_cap_wherever_the_host_is_named() -> None:
    from lighthead_edge.compress.tune import TuneSettings, search_host

    capped = search_host(TuneSettings(val_json="v.json", isa="avx2"))
    assert capped.endswith("OpenVINO's oneDNN kernels capped at --isa avx2")
    assert "capped" not in search_host(TuneSettings(val_json="v.json"))
    with pytest.raises(ConfigError, match="unknown --isa 'avx9'"):
        TuneSettings(val_json="v.json", isa="avx9")
