"""scripts/bench_streams.py at a tiny size: a real run on the tiny bundle writes its table and JSON, every live stream
gets its fair share of the engine, each row is paired with the model-only runs around it, and in the stall run the
two streams that keep sending keep their rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_script
from exported import ExportedAssets


def test_a_small_run_writes_the_table_and_streams_share_fairly(assets: ExportedAssets, tmp_path: Path, capsys):
    out = tmp_path / "streams"
    args = [str(assets.bundle), "--backend", "openvino", "--precision", "fp32", "--threads", "1", "--streams",
            "1,3", "--rounds", "2", "--seconds", "1", "--stall-seconds", "3", "--frame", "160x120",
            "--out", str(out)]  # fmt: skip
    assert load_script("bench_streams").main(args) == 0
    result = json.loads((out / "streams.json").read_text())
    assert (out / "streams.md").read_text().splitlines()[0].startswith("host: ")
    assert result["artifact"] == "openvino/fp32" and result["threads"] == 1
    assert len(result["model_only"]) == 1 + 2 * 2 and min(result["model_only"]) > 0  # a bracket around every row
    rows = {row["streams"]: row for row in result["rows"]}
    assert set(rows) == {1, 3}
    for n, row in rows.items():
        assert len(row["runs"]) == 2
        for run in row["runs"]:
            assert sorted(run["counts"]) == [f"cam{i}" for i in range(n)] and min(run["counts"].values()) > 0
            lo, hi = run["model_only_brackets"]
            assert run["paired_ratio"] == pytest.approx(run["fps"] / ((lo + hi) / 2))
        # live sources sent faster than the engine takes frames: each stream's share of the processed frames is
        # within 10% of the fair one (the target), here on a 1-thread tiny model
        assert 0.9 <= row["share_min"] <= 1.0 <= row["share_max"] <= 1.1, row
        assert row["fps"] > 0 and row["latency_p50_ms"] >= row["infer_p50_ms"] > 0
    stall = result["stall"]
    assert stall["stall_at_s"] == pytest.approx(1.0) and stall["stalled_processed"] > 0
    for name in ("a", "b"):  # they send at a quarter of the engine's rate each: they keep it, before and after
        rate = stall["rates"][name]
        assert rate["after"] >= 0.8 * stall["sending_fps"] and rate["before"] >= 0.8 * stall["sending_fps"], rate
    table = capsys.readouterr().out
    assert "| 3 |" in table and "stall: 3 streams at" in table


@pytest.mark.parametrize("bad,message", [(["--stall-seconds", "1"], "--stall-seconds must be >= 3"),
                                         (["--rounds", "0"], "--rounds must be >= 1"),
                                         (["--seconds", "0"], "--seconds > 0"),
                                         (["--seconds", "nan"], "--seconds > 0")])  # fmt: skip
def test_bad_run_lengths_are_usage_errors(assets: ExportedAssets, tmp_path: Path, capsys, bad, message):
    with pytest.raises(SystemExit) as exc:
        load_script("bench_streams").main([str(assets.bundle), *bad, "--out", str(tmp_path / "s")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
