"""Hand-offs to other OpenVINO tools: a ``detection_output`` IR for DL Streamer and OpenVINO model_api
(``export --layout detection_output``), and an OpenVINO Model Server model repository (``export --ovms DIR``).

**detection_output IR** (``model_detection_output_<precision>.xml`` + ``.bin`` in the bundle, one per OpenVINO IR the
bundle has). It is the bundle's own graph with its four outputs (``boxes`` [1, D, 4], ``scores`` [1, D], ``labels``
[1, D] int64, ``num_detections`` [1]) folded into the one output of OpenVINO's SSD ``DetectionOutput`` layout::

    detection_output  float32 [1, 1, D, 7]:  image_id, label, confidence, x_min, y_min, x_max, y_max

- ``image_id`` is 0 for a detection and -1 for every row from ``num_detections`` on (readers stop at the first -1);
- ``label`` is the bundle's label (1..C) as a float; index 0 is a ``background`` placeholder in ``model_info.labels``;
- the box is divided by the graph input's width and height (``input.shape``): normalized to the image the graph
  takes. For a regular bundle that is the letterboxed model input (image at the top-left, padding bottom/right), so
  the reader's own resize must put the frame there too (``resize_type`` below); for a frame-in bundle
  (``--frame-size``) it is the camera frame itself, and boxes normalized to the frame need no letterbox correction.

Its ``rt_info`` carries the ``model_info`` section that DL Streamer reads when there is no model-proc file
(https://dlstreamer.github.io/dev_guide/model_info_xml.html) and that model_api reads for its wrappers
(https://github.com/openvinotoolkit/model_api/blob/master/docs/source/guides/model-configuration.md), see
:func:`model_info`. The layout follows DL Streamer's ``detection_output`` converter (``DetectionOutputConverter``:
float rows of 7, stop at ``image_id < 0``, ``labels[label_id]``) and model_api's ``SSD`` single-output parser
(``src/python/model_api/models/ssd.py``: rows of 7, boxes normalized, scaled back by
``DetectionModel._resize_detections``).

**OVMS repository** (``--ovms DIR``), as OVMS documents it (https://docs.openvino.ai/2025/model-server/
ovms_docs_models_repository.html, ovms_docs_parameters.html: ``base_path`` may be relative to ``config.json``)::

    DIR/config.json                         {"model_config_list": [{"config": {"name": N, "base_path": N}}, ...]}
    DIR/<name>/1/model.xml, model.bin       the bundle's FP32 IR (boxes, scores, labels, num_detections)
    DIR/<name>_detection_output/1/...       the FP32 detection_output IR, when --layout detection_output
    DIR/lighthead-edge-ovms.json            what lighthead-edge wrote there (format, models, sha256 of every file)

It is written like the bundle: staged beside DIR and renamed into place once complete; DIR is only replaced when it is
missing, empty, or a repository this tool wrote (its ``lighthead-edge-ovms.json``); files a user added are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lighthead_edge.errors import ConfigError, ExportError
from lighthead_edge.runtime.bundle import Precision, artifact_files, file_records, sha256_file
from lighthead_edge.runtime.outputs import swap_directory

if TYPE_CHECKING:
    import openvino as ov

Log = Callable[[str], None]

DETECTION_OUTPUT = "detection_output"  # the output tensor's name, and DL Streamer's converter name
BACKGROUND = "background"  # model_info.labels[0]: labels are 1..C, and both readers index the list by label
OVMS_MARKER = "lighthead-edge-ovms.json"
OVMS_FORMAT = "lighthead-edge/ovms/1"
OVMS_CONFIG = "config.json"
OVMS_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", flags=re.ASCII)


class HandoffLayout(str, Enum):
    """What ``export --layout`` adds to the bundle: ``native`` nothing, ``detection_output`` the IR above."""

    NATIVE = "native"
    DETECTION_OUTPUT = DETECTION_OUTPUT


def detection_output_files(precision: Precision) -> list[str]:
    """``model_detection_output_<precision>.xml`` and ``.bin``."""
    return [f"model_{DETECTION_OUTPUT}_{Precision(precision).value}.{ext}" for ext in ("xml", "bin")]


def check_settings(layout: str, ovms: str | None, ovms_name: str, openvino: bool) -> HandoffLayout:
    """The layout as an enum; :class:`ConfigError` for an unknown one, a bad OVMS model name, or a hand-off asked
    for without the OpenVINO format (both are made from its IR)."""
    try:
        layout = HandoffLayout(layout)
    except ValueError:
        choices = ", ".join(m.value for m in HandoffLayout)
        raise ConfigError(f"unknown --layout {layout!r}; choose one of {choices}") from None
    if not _NAME.fullmatch(ovms_name):
        raise ConfigError(f"--ovms-name {ovms_name!r} must be 1-64 letters, digits, '_', '.' or '-', a letter or "
                          "digit first (it is a folder name and the served model's name)")  # fmt: skip
    if not openvino and (ovms is not None or layout is HandoffLayout.DETECTION_OUTPUT):
        asked = "--ovms" if ovms is not None else "--layout detection_output"
        raise ConfigError(f"{asked} is made from the OpenVINO IR; add openvino to --format")
    return layout


# ----------------------------------------------------------------------------------------- detection_output IR
def detection_output_model(model: ov.Model) -> ov.Model:
    """The bundle graph ``model`` (outputs boxes, scores, labels, num_detections) with one output instead:
    ``detection_output`` float32 [1, 1, D, 7], see the module docstring. ``model``'s parameters are reused (and
    their layout set to NHWC, so readers need not guess it from the shape)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    # the producers of the Results, not the Results' own outputs (an IR can't serialize a Result feeding an op)
    out = {name: o.get_node().input_value(0) for o in model.outputs for name in o.get_names()}
    missing = [n for n in ("boxes", "scores", "labels", "num_detections") if n not in out]
    if missing or len(model.inputs) != 1:
        raise ExportError(f"the IR has no {', '.join(missing) or 'single input'}; it is not a lighthead-edge graph")
    image = model.inputs[0]
    _, h, w, _ = (int(d) for d in image.get_shape())
    d = int(out["boxes"].get_partial_shape()[1].get_length())
    size = np.array([w, h, w, h], dtype=np.float32)
    boxes = ops.divide(out["boxes"], ops.constant(size))  # [1, D, 4], normalized to the graph's input
    rows = ops.range(ops.constant(np.int64(0)), ops.constant(np.int64(d)), ops.constant(np.int64(1)), "i64")
    valid = ops.less(rows, ops.convert(out["num_detections"], "i64"))  # [D]
    image_id = ops.select(valid, ops.constant(np.float32(0)), ops.constant(np.float32(-1)))
    columns = [
        ops.reshape(image_id, ops.constant(np.array([1, d, 1], np.int64)), special_zero=False),
        ops.unsqueeze(ops.convert(out["labels"], "f32"), ops.constant(np.int64(2))),
        ops.unsqueeze(out["scores"], ops.constant(np.int64(2))),
        boxes,
    ]
    rows7 = ops.unsqueeze(ops.concat(columns, axis=2), ops.constant(np.int64(1)))  # [1, 1, D, 7]
    rows7.set_friendly_name(DETECTION_OUTPUT)
    rows7.output(0).get_tensor().set_names({DETECTION_OUTPUT})
    image.get_node().set_layout(ov.Layout("NHWC"))
    return ov.Model([ops.result(rows7)], model.get_parameters(), f"{model.get_friendly_name()}_{DETECTION_OUTPUT}")


def model_info(meta: Mapping[str, Any], input_name: str) -> dict[str, str]:
    """The ``rt_info`` ``model_info`` section of the detection_output IR, as strings (how the IR stores them).

    Keys from DL Streamer's list (model_info_xml.md: model_type, labels, resize_type, reverse_input_channels,
    confidence_threshold, iou_threshold) and model_api's (pad_value, layout); booleans as ``True``/``False`` (what
    model_api's ``BooleanValue.from_str`` reads). Label names are space-separated, so spaces in a class name become
    ``_`` (as Ultralytics' exporter does). No ``mean_values``/``scale_values``: the graph takes uint8 BGR and
    normalizes itself, and both readers' default is no normalization.

    ``resize_type`` is ``fit_to_window``: keep the aspect ratio, image at the top-left, pad bottom and right, which
    is this bundle's letterbox (``fit_to_window_letterbox`` centres the image instead). A frame of the graph's own
    size is not resized at all. ``pad_value`` is one grey level for all channels, the mean of ``pad_bgr``.
    """
    names = [re.sub(r"\s+", "_", name.strip()) for name in meta["class_names"]]
    post = meta.get("postprocessing", {})
    pad = meta["preprocessing"]["letterbox"]["pad_bgr"]
    return {
        "model_type": DETECTION_OUTPUT,
        "labels": " ".join([BACKGROUND, *names]),
        "resize_type": "fit_to_window",
        "reverse_input_channels": "False",  # the graph takes BGR, as decoders hand it over
        "pad_value": str(round(sum(pad) / len(pad))),
        "confidence_threshold": str(post.get("score_thresh", 0.0)),
        "iou_threshold": str(post.get("nms_thresh", 0.5)),  # informational: the graph has already done NMS
        "layout": f"{input_name}:NHWC",
    }


def write_detection_output(root: Path, precision: Precision, meta: Mapping[str, Any]) -> list[str]:
    """Write the detection_output IR of the bundle IR ``root/model_<precision>.xml`` beside it; returns its files."""
    import openvino as ov

    from lighthead_edge.export.openvino import RT_INFO_SECTION, read_rt_info

    source = ov.Core().read_model(str(root / artifact_files(_openvino(), precision)[0]))
    carried = read_rt_info(source)
    model = detection_output_model(source)
    carried["outputs"] = {DETECTION_OUTPUT: {"shape": [1, 1, int(model.outputs[0].get_shape()[2]), 7],
                                             "dtype": "float32", "meaning": _ROWS}}  # fmt: skip
    for key, value in carried.items():
        model.set_rt_info(json.dumps(value, sort_keys=True), [RT_INFO_SECTION, key])
    for key, value in model_info(meta, model.inputs[0].get_any_name()).items():
        model.set_rt_info(value, ["model_info", key])
    files = detection_output_files(precision)
    ov.save_model(model, str(root / files[0]), compress_to_fp16=False)  # fp16/int8 weights stay as they were
    return files


_ROWS = ("image_id (0; -1 from num_detections on), label (1..C), confidence, x_min, y_min, x_max, y_max "
         "normalized to the graph input's width and height")  # fmt: skip


def _openvino():
    from lighthead_edge.runtime.bundle import Backend

    return Backend.OPENVINO


def add_detection_output(root: Path, precisions: list[Precision], meta: Mapping[str, Any], log: Log) -> dict:
    """Write the detection_output IR of each OpenVINO IR ``precisions`` in bundle folder ``root``; returns the
    manifest's ``handoffs.detection_output`` record (its files are for the manifest's ``files``)."""
    entries = []
    for precision in precisions:
        files = detection_output_files(precision)
        log(f"writing the DL Streamer / model_api IR ({DETECTION_OUTPUT}, {precision.value.upper()}) -> {files[0]}")
        entries.append({"precision": precision.value, "path": files[0],
                        "files": write_detection_output(root, precision, meta)})  # fmt: skip
    return {"format": "openvino-ir", "output": {DETECTION_OUTPUT: {"shape": [1, 1, "D", 7], "meaning": _ROWS}},
            "model_info": model_info(meta, meta["input"]["name"]), "artifacts": entries}  # fmt: skip


def handoff_files(handoffs: Mapping[str, Any]) -> list[str]:
    """Every bundle file the ``handoffs`` record names (for the manifest's ``files``)."""
    return [name for entry in handoffs.get(DETECTION_OUTPUT, {}).get("artifacts", []) for name in entry["files"]]


# ---------------------------------------------------------------------------------------------------------- OVMS
def check_ovms_target(ovms: str | Path | None, out: str | Path) -> None:
    """Refuse, before anything is written, a ``--ovms`` folder this tool would not own: a file, a non-empty folder
    that is not a repository lighthead-edge wrote, or one that overlaps ``--out`` (either would replace the other)."""
    if ovms is None:
        return
    target, bundle = Path(ovms).resolve(), Path(out).resolve()
    if target.is_relative_to(bundle) or bundle.is_relative_to(target):
        raise ExportError(f"--ovms {ovms} and --out {out} overlap; write the OVMS repository to another folder")
    if target.exists() and not target.is_dir():
        raise ExportError(f"--ovms {ovms} is a file; give a folder for the OVMS model repository")
    folder = next(p for p in target.parents if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"can't write --ovms {ovms}: {folder} is not a writable folder")
    if target.is_dir() and any(target.iterdir()) and not _is_ovms_marker(target / OVMS_MARKER):
        raise ExportError(f"--ovms {ovms} is a non-empty folder that is not an OVMS repository lighthead-edge wrote "
                          f"(no {OVMS_MARKER}); refusing to replace it")  # fmt: skip


def _is_ovms_marker(path: Path) -> bool:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == OVMS_FORMAT


@contextmanager
def ovms_stage(
    ovms: str | Path | None, log: Log, *, remove_leftovers: Callable[[Path], None]
) -> Iterator[Path | None]:  # fmt: skip
    """Yield None when no repository is asked for, else an empty folder staged beside ``ovms`` that replaces it
    when the block ends normally; if the block raises, the staged folder goes and ``ovms`` is left as it was. What
    the old repository held besides what lighthead-edge wrote there (its :data:`OVMS_MARKER` names the models) is
    carried into the new one, as for a bundle (:func:`~lighthead_edge.export.bundle.atomic_directory`), and
    ``remove_leftovers(ovms)`` first clears what SIGKILLed writes left beside it (the bundle's own cleanup, passed
    in: this module sits below export.bundle)."""
    if ovms is None:
        yield None
        return
    target = Path(ovms)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target)  # a SIGKILLed export's staged folders
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"can't write --ovms {target}: {exc.strerror}") from None
    try:
        tmp.chmod(0o755)
        yield tmp
        _swap_repository(tmp, target, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_repository(new: Path, target: Path, log: Log) -> None:
    if not target.exists():
        os.replace(new, target)
        return
    try:
        ours = {OVMS_MARKER, OVMS_CONFIG, *json.loads((target / OVMS_MARKER).read_text(encoding="utf-8"))["models"]}
    except (OSError, ValueError, KeyError, TypeError):
        ours = {OVMS_MARKER, OVMS_CONFIG}
    kept = sorted(p.name for p in target.iterdir() if p.name not in ours and not (new / p.name).exists())
    for name in kept:
        src = target / name
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, new / name, symlinks=True)
        else:
            shutil.copy2(src, new / name, follow_symlinks=False)
    swap_directory(new, target)
    if kept:
        log(f"kept what the old {target} held besides the repository: {', '.join(kept)}")


def write_ovms_repository(repo: Path, bundle_root: Path, handoffs: Mapping[str, Any], name: str, log: Log) -> dict:
    """Fill the staged folder ``repo`` with OVMS's model repository of the bundle at ``bundle_root`` (its FP32 IR,
    and its FP32 detection_output IR when there is one); returns the manifest's ``handoffs.ovms`` record."""
    served = {name: artifact_files(_openvino(), Precision.FP32)}
    if any(e["precision"] == Precision.FP32.value for e in handoffs.get(DETECTION_OUTPUT, {}).get("artifacts", [])):
        served[f"{name}_{DETECTION_OUTPUT}"] = detection_output_files(Precision.FP32)
    written = []
    for model_name, (xml, weights) in served.items():
        version = repo / model_name / str(OVMS_VERSION)
        version.mkdir(parents=True)
        for src, dst in ((xml, "model.xml"), (weights, "model.bin")):
            shutil.copyfile(bundle_root / src, version / dst)
            written.append(f"{model_name}/{OVMS_VERSION}/{dst}")
    config = {"model_config_list": [{"config": {"name": n, "base_path": n}} for n in served]}
    (repo / OVMS_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    marker = {"format": OVMS_FORMAT, "models": list(served), "version": OVMS_VERSION,
              "files": file_records(repo, [OVMS_CONFIG, *written])}  # fmt: skip
    (repo / OVMS_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    log(f"OVMS model repository: {', '.join(served)} (version {OVMS_VERSION}), {OVMS_CONFIG}")
    return {"models": list(served), "version": OVMS_VERSION, "config_sha256": sha256_file(repo / OVMS_CONFIG)}
