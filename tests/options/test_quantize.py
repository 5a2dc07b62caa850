"""Every option of ``quantize`` reaches the code that uses it: an option parsed and dropped fails here.

Each case runs the real command in-process with one non-default value and checks the consumer. To stay cheap, the
export is replaced by a copy of the shared tiny bundle (its arguments recorded), and the run stops with ``Stop`` at
the consumer a case is about: the calibration set builder, ONNX Runtime's ``quantize_static``, an engine's
``quantize_artifact`` (accuracy control), the benchmark, or the prune.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime.quantization
import pytest
import torch
from exported import ExportedAssets

from lighthead_edge.cli import cli
from lighthead_edge.compress import calibration, pipeline, quantize, quantize_ort, quantize_ov
from lighthead_edge.compress.calibration import Selection
from lighthead_edge.export import bundle as export_module
from lighthead_edge.modeling.checkpoint import load_checkpoint


class Stop(Exception):
    """The run reached the consumer the case is about."""


@dataclass
class Seen:
    """What the spies saw during one command; ``stop_at`` names the spy that ends it."""

    stop_at: str
    export: dict[str, Any] = field(default_factory=dict)  # export_bundle's arguments
    calib: dict[str, Any] = field(default_factory=dict)  # build_calibration_set's arguments, and "count" built
    ort_static: dict[str, Any] = field(default_factory=dict)  # onnxruntime's quantize_static keyword arguments
    artifacts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (backend, quantize_artifact kwargs)
    bench: Any = None  # the BenchSettings the measurement got
    prune: dict[str, Any] = field(default_factory=dict)  # prune_and_finetune's arguments
    timed: list[str] = field(default_factory=list)  # backends whose layers latency-aware INT8 timed
    rows7: list[Path] = field(default_factory=list)  # bundles that got an INT8 detection_output IR

    def reached(self, name: str) -> None:
        if self.stop_at == name:
            raise Stop(name)


def _spy_export(seen: Seen, bundle: Path):
    def export_bundle(model, class_names, out, settings=None, *, source=None, log=print):
        seen.export.update(model=model, class_names=class_names, out=Path(out), settings=settings, source=source)
        seen.reached("export")
        shutil.copytree(bundle, out, dirs_exist_ok=True)  # the bundle this model exports to, made once
        return Path(out)

    return export_bundle


def _spy_calibration(seen: Seen, real):
    def build_calibration_set(source, **kwargs):
        result = real(source, **kwargs)
        seen.calib.update(source=Path(source), count=len(result), **kwargs)
        seen.reached("calibration")
        return result

    return build_calibration_set


def _spy_artifact(seen: Seen, backend: str, real):
    def quantize_artifact(src, dst, calib, settings, **kwargs):
        seen.artifacts.append((backend, {"settings": settings, **kwargs}))
        seen.reached("artifact")
        if seen.stop_at != "bench":
            return real(src, dst, calib, settings, **kwargs)
        shutil.copy(src, dst)  # an "INT8" artifact in no time: the FP32 file under the INT8 name
        if src.suffix == ".xml":
            shutil.copy(src.with_suffix(".bin"), dst.with_suffix(".bin"))
        return {"scheme": "stub", "kept_float": []}

    return quantize_artifact


@pytest.fixture
def run_command(monkeypatch, assets: ExportedAssets, synth_set: dict, tmp_path: Path):
    """run_command(stop_at, *args) -> Seen: ``lighthead-edge quantize`` with ``args`` ({name} filled in), run until
    the spy ``stop_at``."""
    names = {"checkpoint": str(assets.checkpoint), "calib": str(assets.val_json.parent / "images"),
             "val": str(assets.val_json), "data": str(synth_set["train"]), "out": str(tmp_path / "bundle")}  # fmt: skip

    def run(stop_at: str, *args: str) -> Seen:
        seen = Seen(stop_at)

        def static(*a, **kw):
            seen.ort_static.update(kw)
            seen.reached("ort_static")
            raise AssertionError("a case that reaches quantize_static stops there")

        def measure(bundle, settings, log):
            seen.bench = settings
            seen.reached("bench")
            raise AssertionError("a case that reaches the benchmark stops there")

        def prune(model, classes, **kw):
            seen.prune.update(model=model, **kw)
            seen.reached("prune")
            raise AssertionError("a case that reaches the prune stops there")

        monkeypatch.setattr(export_module, "export_bundle", _spy_export(seen, assets.bundle))
        builder = _spy_calibration(seen, calibration.build_calibration_set)
        monkeypatch.setattr(calibration, "build_calibration_set", builder)
        monkeypatch.setattr(onnxruntime.quantization, "quantize_static", static)
        for module, backend in ((quantize_ort, "onnxruntime"), (quantize_ov, "openvino")):
            monkeypatch.setattr(module, "quantize_artifact", _spy_artifact(seen, backend, module.quantize_artifact))
        monkeypatch.setattr(quantize, "measure_bundle", measure)
        monkeypatch.setattr(quantize, "_slower_layers", lambda src, dst, backend, *a: (seen.timed.append(backend.value)
                                                                                      or ([], [])))
        monkeypatch.setattr(quantize, "_add_int8_detection_output", lambda root, log: seen.rows7.append(root))
        monkeypatch.setattr(pipeline, "prune_and_finetune", prune)
        base = ["quantize", "{checkpoint}", "--calib", "{calib}", "--out", "{out}"]
        with pytest.raises(Stop):
            cli.main(args=[a.format(**names) for a in (*base, *args)], standalone_mode=False)
        monkeypatch.undo()
        return seen

    run.names = names
    return run


def _first(seen: Seen) -> dict[str, Any]:
    return seen.artifacts[0][1]


def _same_weights(model, checkpoint: str) -> bool:
    return torch.equal(model.roi_heads.head.fc.weight, load_checkpoint(checkpoint)[0].roi_heads.head.fc.weight)


# option name -> (where the run stops, arguments added to the base command, check(seen, names))
CASES = {
    "checkpoint": ("export", [], lambda s, n: s.export["source"] == Path(n["checkpoint"])
                   and _same_weights(s.export["model"], n["checkpoint"])
                   and s.export["class_names"] == ["circle", "square", "triangle", "star"]),
    "calib": ("calibration", [], lambda s, n: s.calib["source"] == Path(n["calib"])
              and s.calib["count"] == len(list(Path(n["calib"]).glob("*.jpg"))) == 17),  # 1 train + 16 val images
    "out": ("export", [], lambda s, n: s.export["out"].parent == Path(n["out"]).parent
            and s.export["out"].name.startswith(".bundle.")),  # the hidden folder renamed to --out when complete
    "backend": ("bench", ["--backend", "openvino"], lambda s, n: [b for b, _ in s.artifacts] == ["openvino"]
                and [f.value for f in s.export["settings"].formats] == ["openvino"]),
    "calib_size": ("calibration", ["--calib-size", "3"], lambda s, n: s.calib["size"] == 3 == s.calib["count"]),
    "selection": ("calibration", ["--calib-size", "3", "--selection", "diverse"],
                  lambda s, n: Selection(s.calib["selection"]) is Selection.DIVERSE),
    "val_json": ("bench", ["--val", "{val}"], lambda s, n: s.bench.val_json == n["val"]
                 and all(kw["val"].json_path == n["val"] for _, kw in s.artifacts)),
    "max_drop": ("artifact", ["--val", "{val}", "--max-drop", "0.05"], lambda s, n: _first(s)["max_drop"] == 0.05),
    "prune_ratio": ("prune", ["--prune", "0.25", "--data", "{data}"],
                    lambda s, n: s.prune["settings"].ratio == 0.25
                    and _same_weights(s.prune["model"], n["checkpoint"])),
    "train_json": ("prune", ["--prune", "0.25", "--data", "{data}"],
                   lambda s, n: str(s.prune["train_json"]) == n["data"]),
    "finetune_epochs": ("prune", ["--prune", "0.25", "--data", "{data}", "--finetune-epochs", "2"],
                        lambda s, n: s.prune["train_config"].epochs == 2),
    "ort_ranges": ("ort_static", ["--backend", "onnxruntime", "--ort-ranges", "averaged"],
                   lambda s, n: s.ort_static["extra_options"]["CalibMovingAverage"] is True),
    "keep_float": ("ort_static", ["--backend", "onnxruntime", "--keep-float", "roi_heads/head/fc/"],
                   lambda s, n: any(x.startswith("/roi_heads/head/fc/") for x in s.ort_static["nodes_to_exclude"])),
    "threads": ("bench", ["--threads", "1"], lambda s, n: s.bench.threads == (1,) and s.export["settings"].threads == 1
                and _first(s)["threads"] == 1),  # the benchmark, export's timing and ORT's profile
    "runs": ("bench", ["--runs", "3"], lambda s, n: s.bench.runs == 3),
    "frame_size": ("export", ["--frame-size", "200x150"],
                   lambda s, n: s.export["settings"].frame_size == (150, 200)),  # tests/export/test_frame_in.py: INT8
    "rois": ("export", ["--rois", "17"], lambda s, n: s.export["settings"].rois == 17),  # tests/export/test_rois.py
    "latency_aware": ("bench", ["--no-latency-aware"], lambda s, n: s.timed == [] and len(s.artifacts) == 2),
    "layout": ("bench", ["--layout", "detection_output"], lambda s, n: s.export["settings"].layout == "detection_output"
               and len(s.rows7) == 1),  # tests/compress/test_latency_aware.py: the INT8 IR's rows
}  # fmt: skip


def test_every_option_has_a_case():
    assert {p.name for p in cli.commands["quantize"].params} == set(CASES)


@pytest.mark.parametrize("option", sorted(CASES))
def test_option_reaches_its_consumer(option, run_command):
    stop_at, args, check = CASES[option]
    seen = run_command(stop_at, *args)
    assert check(seen, run_command.names), f"quantize {option}: {args} did not reach its consumer"


def test_a_check_fails_without_its_option(run_command):
    """The checks can fail: with the base command alone, the cases of options with a default do not hold."""
    required = {"checkpoint", "calib", "out"}
    by_stop: dict[str, list[str]] = {}
    for option, (stop_at, _, _) in CASES.items():
        if option not in required and stop_at != "prune":  # without --prune nothing prunes: no stop to reach
            by_stop.setdefault(stop_at, []).append(option)
    for stop_at, options in by_stop.items():
        seen = run_command(stop_at)
        for option in options:
            try:
                held = CASES[option][2](seen, run_command.names)
            except (KeyError, AttributeError, IndexError):
                held = False  # the consumer never saw the setting at all
            assert not held, option


def test_without_prune_nothing_prunes(run_command):
    seen = run_command("export")
    assert seen.prune == {}
