"""ISA reporting and capping (``lighthead-edge bench --isa``) on the tiny bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from exported import ExportedAssets

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.isa import ONEDNN_LAYERS, cap_isa, check_cap, kernel_isas


def _compiled(assets: ExportedAssets):
    import openvino as ov

    return ov.Core().compile_model(str(assets.bundle / "model_fp32.xml"), "CPU", {"INFERENCE_NUM_THREADS": 1})


def test_kernels_are_counted_by_isa(assets: ExportedAssets) -> None:
    compiled = _compiled(assets)
    every, heavy = kernel_isas(compiled), kernel_isas(compiled, ONEDNN_LAYERS)
    assert sum(heavy.values()) >= 10  # the backbone's convolutions at least
    assert all(every.get(isa, 0) >= n for isa, n in heavy.items())  # a subset of the whole count
    assert set(every) <= {"sse41", "avx", "avx2", "avx512", "amx", "other"}


def test_a_cap_that_came_too_late_is_an_error(assets: ExportedAssets) -> None:
    """This process compiled OpenVINO models before: an AVX2 cap set now cannot reach them, and on a CPU with
    AVX-512 the check says so; on an AVX2-only CPU the kernels are AVX2 anyway and there is nothing to catch."""
    compiled = _compiled(assets)
    if "avx512" in kernel_isas(compiled, ONEDNN_LAYERS):
        with pytest.raises(ConfigError, match="--isa avx2 did not take"):
            check_cap(compiled, "avx2")
    else:
        check_cap(compiled, "avx2")
    check_cap(compiled, "native")  # no cap, nothing to check


def test_unknown_isa_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    with pytest.raises(ConfigError, match="unknown ISA 'avx9'; choose one of native, avx2"):
        cap_isa("avx9")
    assert cap_isa("avx2") == "AVX2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert cap_isa("native") is None and "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_bench_isa_avx2_runs_openvino_on_avx2_kernels(assets: ExportedAssets, tmp_path: Path) -> None:
    """In a fresh process the cap takes: the convolutions run AVX2 kernels, and the report says it was capped."""
    cmd = [sys.executable, "-m", "lighthead_edge.cli", "bench", str(assets.bundle), "--isa", "avx2", "--threads", "1",
           "--runs", "2", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["isa"] == "avx2"
    ov_rows = {k: r for k, r in report["results"].items() if k.startswith("openvino/")}
    assert ov_rows and all(r["kernels"].get("avx2", 0) >= 10 for r in ov_rows.values())
    assert "oneDNN capped at --isa avx2" in (tmp_path / "report.md").read_text()
