"""Every option of ``export`` reaches the code that uses it: an option parsed and dropped fails here.

Each case runs the real command in-process on a tiny untrained detector with one non-default value, and stops with
``Stop`` at the consumer the case is about: the graph builder (``build_export_model``) or the measurement
(``export_measurements``), which sees the model, its settings and the bundle written so far (artifacts, manifest and
the opset inside the ONNX file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from lighthead_edge.cli import cli
from lighthead_edge.export import bundle as export_module
from lighthead_edge.export import graph
from lighthead_edge.modeling.checkpoint import load_checkpoint, save_checkpoint
from lighthead_edge.runtime.bundle import sha256_file

CLASSES = ["circle", "square", "triangle", "star"]


class Stop(Exception):
    """The run reached the consumer the case is about."""


@dataclass
class Seen:
    """What the spies saw during one command; ``stop_at`` names the spy that ends it."""

    stop_at: str
    graphs: list[dict[str, Any]] = field(default_factory=list)  # build_export_model's keyword arguments, per call
    measure: dict[str, Any] = field(default_factory=dict)  # export_measurements' arguments and the bundle so far

    def reached(self, name: str) -> None:
        if self.stop_at == name:
            raise Stop(name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_detector) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("export_options") / "tiny.pt", tiny_detector, CLASSES)


@pytest.fixture
def run_command(monkeypatch: pytest.MonkeyPatch, checkpoint: Path, synth_set: dict, tmp_path: Path):
    """run_command(stop_at, *args) -> Seen: ``lighthead-edge export`` with ``args`` ({name} filled in), run until the
    spy ``stop_at``."""
    names = {"checkpoint": str(checkpoint), "out": str(tmp_path / "bundle"), "val": str(synth_set["val"]),
             "ovms": str(tmp_path / "ovms")}  # fmt: skip

    def run(stop_at: str, *args: str) -> Seen:
        seen = Seen(stop_at)
        real_build = graph.build_export_model

        def build(model, **kwargs):
            seen.graphs.append(kwargs)
            seen.reached("graph")
            return real_build(model, **kwargs)

        def measure(model, bundle, **kwargs):
            manifest = json.loads((bundle.root / "manifest.json").read_text())
            opsets = {p.name: _opset(p) for p in bundle.root.glob("*.onnx")}  # the folder goes when the run stops
            ovms = Path(names["ovms"])  # the OVMS repository staged beside --ovms, renamed into place at the end
            staged = [str(f.relative_to(p)) for p in ovms.parent.glob(f".{ovms.name}.*.partial") for f in p.rglob("*")]
            seen.measure.update(model=model, root=bundle.root, keys=[a.key for a in bundle.artifacts],
                                manifest=manifest, files=sorted(p.name for p in bundle.root.iterdir()), opsets=opsets,
                                ovms=sorted(staged), **kwargs)  # fmt: skip
            seen.reached("measure")
            raise AssertionError("a case that reaches the measurement stops there")

        monkeypatch.setattr(graph, "build_export_model", build)
        monkeypatch.setattr(export_module, "export_measurements", measure)
        base = ["export", "{checkpoint}", "--out", "{out}"]
        with pytest.raises(Stop):
            cli.main(args=[a.format(**names) for a in (*base, *args)], standalone_mode=False)
        monkeypatch.undo()
        return seen

    run.names = names
    return run


def _same_weights(model, checkpoint: str) -> bool:
    return torch.equal(model.roi_heads.head.fc.weight, load_checkpoint(checkpoint)[0].roi_heads.head.fc.weight)


def _opset(path: Path) -> int:
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


ONNX = ["--format", "onnx"]  # one artifact: the measurement cases stay cheap
OPENVINO = ["--format", "openvino"]  # the hand-offs are made from the IR

# option name -> (where the run stops, arguments added to the base command, check(seen, names))
CASES = {
    "checkpoint": ("measure", ONNX, lambda s, n: _same_weights(s.measure["model"], n["checkpoint"])
                   and s.measure["manifest"]["source_checkpoint"] == {"name": "tiny.pt",
                                                                      "sha256": sha256_file(n["checkpoint"])}
                   and s.measure["manifest"]["class_names"] == CLASSES),
    "out": ("measure", ONNX, lambda s, n: s.measure["root"].parent == Path(n["out"]).parent
            and s.measure["root"].name.startswith(".bundle.")),  # the hidden folder renamed to --out when complete
    "formats": ("measure", ONNX, lambda s, n: s.measure["keys"] == ["onnxruntime/fp32"]
                and [g["engine"] for g in s.graphs] == ["onnxruntime"]
                and s.measure["files"] == ["manifest.json", "model.onnx"]),
    "method": ("graph", ["--method", "gather"], lambda s, n: s.graphs[0]["method"] == "gather"),
    "opset": ("measure", [*ONNX, "--opset", "18"], lambda s, n: s.measure["opsets"] == {"model.onnx": 18}
              and s.measure["manifest"]["artifacts"][0]["opset"] == 18),
    "val_json": ("measure", [*ONNX, "--val", "{val}"], lambda s, n: s.measure["val_json"] == n["val"]),
    "threads": ("measure", [*ONNX, "--threads", "1"], lambda s, n: s.measure["threads"] == 1),
    "latency_runs": ("measure", [*ONNX, "--runs", "3"], lambda s, n: s.measure["runs"] == 3),
    "frame_size": ("measure", [*ONNX, "--frame-size", "200x150"], lambda s, n: s.graphs[0]["frame_size"] == (150, 200)
                   and s.measure["manifest"]["input"]["shape"] == [1, 150, 200, 3]
                   and s.measure["manifest"]["preprocessing"]["letterbox"]["in_graph"] is True),
    "layout": ("measure", [*OPENVINO, "--layout", "detection_output"],
               lambda s, n: "model_detection_output_fp32.xml" in s.measure["files"]
               and "model_detection_output_fp32.xml" in s.measure["manifest"]["files"]
               and s.measure["manifest"]["handoffs"]["detection_output"]["model_info"]["model_type"]
               == "detection_output"),
    "ovms": ("measure", [*OPENVINO, "--ovms", "{ovms}"], lambda s, n: "lighthead/1/model.xml" in s.measure["ovms"]
             and s.measure["manifest"]["handoffs"]["ovms"]["models"] == ["lighthead"]),
    "rois": ("measure", [*ONNX, "--rois", "17"], lambda s, n: s.measure["manifest"]["postprocessing"]["rois"] == 17),
    "ovms_name": ("measure", [*OPENVINO, "--ovms", "{ovms}", "--ovms-name", "cam1"],
                  lambda s, n: "cam1/1/model.xml" in s.measure["ovms"]
                  and s.measure["manifest"]["handoffs"]["ovms"]["models"] == ["cam1"]),
}  # fmt: skip


def test_every_option_has_a_case() -> None:
    assert {p.name for p in cli.commands["export"].params} == set(CASES)


@pytest.mark.parametrize("option", sorted(CASES))
def test_option_reaches_its_consumer(option: str, run_command) -> None:
    stop_at, args, check = CASES[option]
    seen = run_command(stop_at, *args)
    assert check(seen, run_command.names), f"export {option}: {args} did not reach its consumer"


def test_a_check_fails_without_its_option(run_command) -> None:
    """The checks can fail: with the base command alone (both formats), the cases of options with a default do not
    hold."""
    required = {"checkpoint", "out"}
    by_stop: dict[str, list[str]] = {}
    for option, (stop_at, _, _) in CASES.items():
        if option not in required:
            by_stop.setdefault(stop_at, []).append(option)
    for stop_at, options in by_stop.items():
        seen = run_command(stop_at)
        for option in options:
            try:
                held = CASES[option][2](seen, run_command.names)
            except (KeyError, AttributeError, IndexError):
                held = False  # the consumer never saw the setting at all
            assert not held, option
