"""`lighthead-edge bench` on a bundle and on a model.pt, and scripts/bench_compress.py's whole table, on the tiny
committed checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from exported import ExportedAssets

from lighthead_edge.cli import cli
from lighthead_edge.compress.bench import check_report_folder
from lighthead_edge.errors import ConfigError, DataError
from lighthead_edge.measure import latencies

CHECKPOINT = Path(__file__).parents[1] / "export" / "data" / "tiny_synth_128.pt"
SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_compress.py"


def test_cli_bench_a_bundle_times_every_artifact_at_every_thread_count(assets: ExportedAssets, tmp_path: Path):
    result = CliRunner().invoke(cli, ["bench", str(assets.bundle), "--threads", "1,2", "--runs", "4",
                                      "--val", str(assets.val_json), "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    keys = {"onnxruntime/fp32", "openvino/fp32"}
    assert keys <= set(report["results"])
    for key in keys:
        row = report["results"][key]
        for threads in ("1", "2"):
            stats = row["latency_ms"][threads]
            assert stats["runs"] == 4 and 0 < stats["min"] <= stats["p50"] <= stats["p95"]
        assert 0 <= row["coco"]["AP"] <= 1 and row["throughput_fps"] > 0
    assert report["results"]["onnxruntime/fp32"]["ratios"]["latency_p50"] == 1.0
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bench_a_checkpoint_has_the_torch_baseline(tmp_path: Path):
    result = CliRunner().invoke(cli, ["bench", str(CHECKPOINT), "--threads", "1", "--runs", "2", "--out",
                                      str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "report.json").read_text())["results"]
    assert results["torch/fp32"]["ratios"]["latency_p50"] == 1.0
    assert results["onnxruntime/fp32"]["ratios"]["latency_p50"] > 0


def test_cli_bench_bad_input_is_one_line(cli, tmp_path: Path):
    code, _, err = cli("bench", tmp_path / "nope")
    assert (
        code == DataError.exit_code
        and err.strip() == f"error: {tmp_path / 'nope'} not found; give a bundle folder or a model.pt"
    )
    for threads in ("0", "one,two", "1,,2", "99999999999999999", "nan"):
        code, _, err = cli("bench", CHECKPOINT, "--threads", threads)
        assert code == ConfigError.exit_code and err.strip().startswith(
            f"error: Invalid value for '--threads': {threads!r}: give ints in 1..1024, comma-separated")


def test_bench_refuses_a_report_folder_before_measuring(assets: ExportedAssets, cli, tmp_path: Path):
    """--out that is a file, under a file, or a user's folder (their own report.md) is refused at once, in one line,
    and nothing in it changes; a bundle, a new or empty folder, or one holding only our earlier report is taken."""
    user = tmp_path / "site"
    user.mkdir()
    (user / "report.md").write_text("# my own report\n")
    (tmp_path / "file.txt").write_text("mine\n")
    for out, says in ((user, "holds a report bench did not write"), (tmp_path / "file.txt", "is a file"),
                      (tmp_path / "file.txt" / "sub", "file.txt is a file, not a folder")):  # fmt: skip
        code, _, err = cli("bench", assets.bundle, "--runs", "1", "--threads", "1", "--out", out)
        assert code == ConfigError.exit_code and len(err.strip().splitlines()) == 1 and says in err, err
    assert (user / "report.md").read_text() == "# my own report\n" and sorted(p.name for p in user.iterdir()) == [
        "report.md"]  # fmt: skip
    check_report_folder(assets.bundle, "--out", strict=True)  # a bundle (its reports are in its manifest)
    check_report_folder(tmp_path / "new", "--out", strict=True)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "report.json").write_text(json.dumps({"host": "x", "results": {}}))
    (ours / "report.md").write_text("# lighthead-edge report\n")
    check_report_folder(ours, "--out", strict=True)
    (ours / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="holds other files"):
        check_report_folder(ours, "--out", strict=True)
    check_report_folder(ours, "the report folder", strict=False)  # beside a model.pt: other files are fine
    with pytest.raises(ConfigError, match="did not write"):
        check_report_folder(user, "the report folder", strict=False)


def test_bench_compress_script_builds_the_whole_table(assets: ExportedAssets, tuned, tmp_path: Path, capsys):
    """The benchmark's variants in one run: torch, both engines FP32/INT8, pruned FP32 / pruned + INT8, and the
    variant ``tune`` chose (the session's tune run of conftest.py, ONNX Runtime)."""
    spec = importlib.util.spec_from_file_location("bench_compress", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schedules = []

    def recorded(variants, settings):  # the real timing, with a note of which variants shared one schedule
        schedules.append(sorted(variants))
        return latencies(variants, settings)

    module.latencies = recorded
    data = str(assets.val_json)
    code = module.main(["--checkpoint", str(CHECKPOINT), "--data", data, "--val", data, "--prune", "0.5",
                        "--calib-size", "8", "--threads", "1", "--runs", "2", "--keep-float", "roi_heads/head/fc/",
                        "--tuned", str(tuned.out), "--out", str(tmp_path)])  # fmt: skip
    assert code == 0 and tuned.code == 0
    results = json.loads((tmp_path / "report.json").read_text())["results"]
    expected = {"torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8",
                "onnxruntime/pruned-fp32", "openvino/pruned-int8"}  # fmt: skip
    assert expected <= set(results)
    assert all(results[key]["ratios"]["vs_torch"] > 0 for key in expected)
    quantization = json.loads((tmp_path / "report.json").read_text())["quantization"]
    assert all(q["kept_float"][0]["why"] == "--keep-float" for q in quantization.values())  # the flag reached both
    printed = capsys.readouterr().out
    assert "| openvino/pruned-int8 |" in printed
    # the pruned rows' ratios are against the unpruned FP32: both were timed in the same interleaved schedule
    together = [s for s in schedules if "openvino/fp32" in s and "openvino/pruned-int8" in s]
    assert len(together) == 1 and not any(k.endswith("fp16") for k in together[0])
    assert all(results[k]["latency_ms"]["1"]["p50"] > 0 for k in together[0])
    # --tuned: tune's choice is a row with the AP tune measured (the same graph on the same data), timed with the rest
    chosen = json.loads((tuned.out / "tune.json").read_text())["chosen"]
    key = f"onnxruntime/tuned-{chosen['precision']}@{chosen['rois']}"
    assert key in together[0] and results[key]["baseline"] == "onnxruntime/fp32"
    assert results[key]["coco"]["AP"] == pytest.approx(chosen["ap"], abs=1e-6)
    assert results[key]["ratios"]["latency_p50"] > 0
    assert f"| {key} |" in printed and f"chose {chosen['label']} at AP" in printed
