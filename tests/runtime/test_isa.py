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


class _Value(str):
    def astype(self, _type: type) -> str:  # an OpenVINO rt_info value
        return str(self)


class _Op:
    def __init__(self, layer: str, primitive: str) -> None:
        self.info = {"layerType": _Value(layer), "primitiveType": _Value(primitive)}

    def get_rt_info(self) -> dict[str, _Value]:
        return self.info


class _Compiled:
    """A compiled model whose runtime graph reports these (layer type, kernel) pairs, as OpenVINO's CPU plugin does."""

    def __init__(self, *ops: tuple[str, str]) -> None:
        self.ops = [_Op(*op) for op in ops]

    def get_runtime_model(self) -> _Compiled:
        return self

    def get_ops(self) -> list[_Op]:
        return self.ops


def test_a_cap_that_did_not_take_is_an_error_on_any_host() -> None:
    """The check reads the kernels' names: an AVX-512 convolution under an AVX2 cap is an error, an AVX-512 TopK (not a
    oneDNN kernel, so the cap cannot reach it) is not, and AVX2 kernels pass."""
    late = _Compiled(("Convolution", "brgconv_avx512_core_I8"), ("TopK", "ref_any"), ("Input", "unknown"))
    with pytest.raises(ConfigError, match="--isa avx2 did not take: OpenVINO still runs avx512 convolution kernels"):
        check_cap(late, "avx2")
    check_cap(late, "native")  # no cap, nothing to check
    check_cap(late, "avx512_core")  # an AVX-512 cap allows them
    check_cap(_Compiled(("Convolution", "jit_avx2_I8"), ("TopK", "jit_avx512_core")), "avx2")
    assert kernel_isas(late) == {"avx512": 1, "other": 1}


def test_this_hosts_kernels_follow_its_isa(assets: ExportedAssets) -> None:
    """On this host, uncapped: AVX-512 convolution kernels exactly when the CPU has AVX-512 (this process compiled
    OpenVINO models before, so an AVX2 cap set now cannot reach them, and the check says so); AVX2 ones otherwise."""
    from lighthead_edge.runtime.isa import cpu_isa_flags

    heavy = kernel_isas(_compiled(assets), ONEDNN_LAYERS)
    if "avx512" in cpu_isa_flags():
        assert heavy.get("avx512", 0) >= 10, heavy
        with pytest.raises(ConfigError, match="--isa avx2 did not take"):
            check_cap(_compiled(assets), "avx2")
    else:
        assert "avx512" not in heavy and "amx" not in heavy and heavy.get("avx2", 0) >= 10, heavy
        check_cap(_compiled(assets), "avx2")


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
