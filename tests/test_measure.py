"""The measurement module: interleaved timing, the host line, the frame latency is measured on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_interleaved_timings_spread_a_slow_spell_over_all_variants(monkeypatch) -> None:
    """Two equally fast variants on a host that is 3x slower for a stretch of the run. Timed one after the other,
    the spell lands on one of them (ratio 3); interleaved, both see it alike (ratio 1)."""
    import lighthead_edge.measure as measure

    clock = {"now": 0.0, "calls": 0}

    def call() -> None:  # 1 ms of work, 3 ms during calls 30..49 of the run (a third of it)
        clock["calls"] += 1
        clock["now"] += 0.003 if 30 <= clock["calls"] < 50 else 0.001

    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["now"])
    fns = {"fp32": call, "int8": call}
    blockwise = {key: measure.timings(fn, runs=24, warmup=2) for key, fn in fns.items()}
    assert blockwise["int8"]["p50"] / blockwise["fp32"]["p50"] == pytest.approx(3.0)
    clock.update(now=0.0, calls=0)
    interleaved = measure.interleaved_timings(fns, runs=24, warmup=2, rounds=4)
    assert interleaved["int8"]["p50"] / interleaved["fp32"]["p50"] == pytest.approx(1.0)
    assert interleaved["int8"]["runs"] == interleaved["fp32"]["runs"] == 24
    assert clock["calls"] == 2 * (2 + 24 + 4)  # warm-up, timed runs, one untimed call after each switch


def test_host_description_names_the_cpu_and_its_simd_extensions() -> None:
    from lighthead_edge.measure import host_description
    from lighthead_edge.runtime.isa import cpu_isa_flags

    host = host_description()
    assert ", " in host and " cores" in host
    assert all(flag in host for flag in cpu_isa_flags())


def test_bench_frame_is_the_letterboxed_first_val_image(synth_set: dict) -> None:
    from types import SimpleNamespace

    from lighthead_edge.data.cocojson import image_paths
    from lighthead_edge.data.transforms import letterbox, read_image
    from lighthead_edge.measure import bench_frame

    bundle = SimpleNamespace(input_size=(64, 96), pad_bgr=(1, 2, 3))
    frame = bench_frame(bundle, synth_set["val"])
    expected = letterbox(read_image(image_paths(synth_set["val"])[0]), (64, 96), pad_bgr=(1, 2, 3))[0]
    assert frame.shape == (1, 64, 96, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[0], expected)
    noise = bench_frame(bundle, None)
    np.testing.assert_array_equal(noise, bench_frame(bundle, None))  # fixed noise: every variant sees the same


def test_measure_needs_no_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import lighthead_edge.measure"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
