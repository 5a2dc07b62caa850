"""Fixed-memory latency statistics and the summary."""

from __future__ import annotations

import numpy as np
import pytest

from lighthead_edge.runtime.stats import Histogram, RunStats


def test_histogram_percentiles_within_two_percent() -> None:
    values = np.random.default_rng(0).lognormal(mean=3.0, sigma=0.7, size=20_000)
    hist = Histogram()
    for v in values:
        hist.add(float(v))
    for q in (50, 95, 99):
        assert hist.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.02)
    assert hist.mean == pytest.approx(values.mean()) and hist.peak == pytest.approx(values.max())
    assert len(hist.counts) == len(Histogram().counts)  # memory does not grow with the samples


def test_histogram_edges() -> None:
    hist = Histogram()
    assert hist.percentile(50) == 0.0
    hist.add(0.0)
    hist.add(-1.0)
    hist.add(1e12)  # beyond the last bucket: clamped there, the max stays exact
    assert hist.percentile(10) == 0.0 and hist.peak == 1e12


def test_run_stats_window_and_summary() -> None:
    stats = RunStats()
    for i in range(10):
        stats.add_read(1.0)
        stats.add_processed(0.5, 10.0 + i, 0.2, 20.0)
        stats.add_output(1.5)
    stats.add_read(1.0)
    stats.add_dropped()
    stats.set_source_counters(corrupt=2, missing=0, reconnects=1)
    line = stats.window_line()
    assert "fps" in line and "p95" in line and "dropped 1" in line and "reconnects 1" in line
    assert "processed 10" in stats.window_line() and stats.window_line().split()[3] == "0.0"  # a new window
    stats.finish()
    summary = stats.summary(stopped_by="SIGTERM", settings={"nireq": 2})
    assert (summary.frames_read, summary.processed, summary.dropped, summary.corrupt) == (11, 10, 1, 2)
    assert summary.stages["infer"]["count"] == 10 and summary.stages["infer"]["max_ms"] == 19.0
    text = summary.format()
    assert "stopped by SIGTERM" in text and "reconnects 1" in text
    assert all(stage in text for stage in ("decode", "preprocess", "infer", "postprocess", "output", "latency"))
    assert summary.to_dict()["settings"] == {"nireq": 2}
