"""``lighthead-edge export``: a model (in memory) to a bundle folder of ONNX / OpenVINO artifacts and ``manifest.json``.

The bundle is built in a hidden sibling folder and renamed into place only when it is complete, so an interrupted
export leaves no bundle and an existing bundle at the target survives until its replacement is whole. Nothing the
tool did not write is lost: only an empty folder or a lighthead-edge bundle is replaced, files a user put into a bundle
are carried into the new one, and no input may lie inside ``--out`` (:func:`check_target`). A process killed with
SIGKILL can leave a ``.<name>.<pid>.*.partial`` folder beside the target; the next write to that target removes it.

Manifest (``format`` = :data:`~lighthead_edge.runtime.bundle.BUNDLE_FORMAT`; the file names, artifact entries, writer
and reader are in :mod:`lighthead_edge.runtime.bundle`)::

    format, created, producer {lighthead_edge, torch, onnx, openvino}
    class_names [C], labels (how labels map to names)
    input {name, shape [1, H, W, 3], dtype uint8, layout NHWC, channel_order BGR}   (what the graph takes)
    preprocessing {letterbox {size [H, W], in_graph, scale, resize, placement, pad, pad_bgr}, in_graph [...],
                   mean_rgb, std_rgb}   (letterbox.in_graph: input.shape is the camera's frame, see below)
    outputs {boxes, scores, labels, num_detections: {shape, dtype, meaning}}
    postprocessing {score_thresh, nms_thresh, max_detections, class_agnostic_regression, rois, rpn {...}}
                   (rois: the graph's static number of post-NMS RoI slots, see :func:`roi_slots`)
    model {architecture, backbone, head_size, config {ModelConfig without input_size}}
    source_checkpoint {name, sha256} of the model.pt it came from, or null for a model exported from memory
    artifacts [{backend, precision, format, path, files [...], ps_roi_align_method, opset?}]
    files {relative path: {sha256, bytes}}   (every artifact file, and the report files quantize/bench add)
    measurements {threads, latency_runs, host, val_data?, val_images?, results {"backend/precision": {...}}}

A frame-in bundle (``export --frame-size WxH``) takes the camera's frames as they are: ``input.shape`` is
[1, h, w, 3] of the frame, ``preprocessing.letterbox.in_graph`` is true, the letterbox to ``letterbox.size`` happens
in the graph and ``boxes`` come out in frame pixels. The runtime feeds such a frame straight in; a frame of another
size is letterboxed on the host to the graph's input first (as for any bundle), and its boxes mapped back.

Everything above ``artifacts`` is also stored in the ONNX ``metadata_props`` (``lighthead_edge.<key>``, JSON values)
and in the OpenVINO ``rt_info`` (section ``lighthead_edge``).
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lighthead_edge.cli_types import MAX_FRAME_SIDE
from lighthead_edge.data.transforms import PAD_BGR
from lighthead_edge.errors import ConfigError, ExportError
from lighthead_edge.export import handoff
from lighthead_edge.measure import export_measurements, summary_line
from lighthead_edge.runtime.bundle import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    MANIFEST_TMP,
    REPORT_FILES,
    Backend,
    Precision,
    artifact_entry,
    artifact_files,
    file_records,
    input_record,
    is_bundle_manifest,
    load_bundle,
    read_manifest,
    sha256_file,
    write_manifest,
)
from lighthead_edge.runtime.outputs import process_alive, swap_directory

if TYPE_CHECKING:
    from lighthead_edge.modeling.detector import LightHeadRCNN

Log = Callable[[str], None]


class ExportFormat(str, Enum):
    """What ``--format`` asks for: ``onnx`` (one fp32 file, for onnxruntime) and/or ``openvino`` (FP32 + FP16 IR)."""

    ONNX = "onnx"
    OPENVINO = "openvino"


# The PS-RoIAlign decomposition per backend for ``--method auto``. scripts/bench_export.py times both for the default
# model (300 RoIs on the 490 x 32 x 32 thin map, 2 threads): GridSample 8.8 ms vs GatherElements 22.8 ms in
# onnxruntime, 3.1 ms vs 19.3 ms in OpenVINO, so GridSample in both (and < 5% of the detector, where gather is ~15%).
AUTO_METHODS: dict[Backend, str] = {Backend.ONNXRUNTIME: "grid_sample", Backend.OPENVINO: "grid_sample"}
METHOD_CHOICES = ("auto", "grid_sample", "gather")


@dataclass(frozen=True)
class ExportSettings:
    """What to export and what to measure.

    Attributes:
        formats: artifacts to write.
        method: PS-RoIAlign decomposition, ``"auto"`` (per backend, :data:`AUTO_METHODS`), ``"grid_sample"`` or
            ``"gather"``; or a mapping of backend name to one of those.
        opset: ONNX opset (17 or newer).
        val_json: a COCO json to measure AP on, for torch and every artifact (optional).
        latency_runs: timed runs per artifact (median and best are recorded).
        threads: inference threads for the measurements [default: the engine's].
        frame_size: ``(height, width)`` of the camera's frames: the graph takes them as they are and letterboxes
            them itself (``--frame-size WxH``); None: it takes images letterboxed to the model's input size.
        layout, ovms, ovms_name: hand-offs (:mod:`lighthead_edge.export.handoff`): ``"detection_output"`` also
            writes the DL Streamer / model_api IR; ``ovms`` a folder to write OVMS's model repository to, serving
            the model as ``ovms_name``.
        rois: the graph's static number of post-NMS RoI slots (``--rois``), set as the model's
            ``rpn_post_nms_top_n_test`` on a copy of it (:func:`with_rois`); the graph clips it to the pre-NMS
            candidates (:func:`roi_slots`). None: the model's own setting.
    """

    formats: tuple[ExportFormat, ...] = (ExportFormat.ONNX, ExportFormat.OPENVINO)
    method: str | Mapping[str, str] = "auto"
    opset: int = 17
    val_json: str | None = None
    latency_runs: int = 10
    threads: int | None = None
    frame_size: tuple[int, int] | None = None
    layout: str = "native"
    ovms: str | None = None
    ovms_name: str = "lighthead"
    rois: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(ExportFormat(f) for f in self.formats))
        openvino = ExportFormat.OPENVINO in self.formats
        object.__setattr__(self, "layout", handoff.check_settings(self.layout, self.ovms, self.ovms_name, openvino))
        if self.frame_size is not None and not all(1 <= int(v) <= MAX_FRAME_SIDE for v in self.frame_size):
            raise ConfigError(f"frame_size sides must be 1..{MAX_FRAME_SIDE}, got {self.frame_size}")
        if not self.formats:
            raise ConfigError("export needs at least one format: onnx, openvino")
        chosen = self.method.values() if isinstance(self.method, Mapping) else [self.method]
        if any(m not in METHOD_CHOICES for m in chosen):
            raise ConfigError(f"unknown PS-RoIAlign method {self.method!r}; choose one of {', '.join(METHOD_CHOICES)}")
        if self.opset < 17:
            raise ConfigError(f"opset must be 17 or newer, got {self.opset}")
        if self.latency_runs < 1:
            raise ConfigError("latency_runs must be >= 1")
        if self.rois is not None and (not isinstance(self.rois, int) or isinstance(self.rois, bool) or self.rois < 1):
            raise ConfigError(f"rois must be a whole number >= 1, got {self.rois!r}")

    def method_for(self, backend: Backend) -> str:
        method = self.method.get(backend.value, "auto") if isinstance(self.method, Mapping) else self.method
        return AUTO_METHODS[backend] if method == "auto" else method


def parse_formats(text: str) -> tuple[ExportFormat, ...]:
    """``"onnx,openvino"`` -> formats, in a fixed order; ``ConfigError`` names an unknown one."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in {f.value for f in ExportFormat}]
    if unknown or not names:
        raise ConfigError(f"unknown export format(s) {unknown or [text]}; use onnx, openvino or onnx,openvino")
    return tuple(f for f in ExportFormat if f.value in names)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------------ atomic writes
def check_target(target: str | Path, inputs: Mapping[str, str | Path | None] | None = None) -> None:
    """Refuse, before anything is written, to replace anything but nothing, an empty folder or a lighthead-edge
    bundle (a ``manifest.json`` whose ``format`` says so), and to write a bundle over one of its own ``inputs``
    (``{"--val": path, ...}``: a file or folder at ``target`` or inside it would be deleted with it)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {target} is a file; give a folder for the bundle")
    where = target.resolve()
    for option, path in (inputs or {}).items():
        if path is not None and Path(path).resolve().is_relative_to(where):
            raise ExportError(f"{option} {path} is inside --out {target}, which the bundle replaces; "
                              "write the bundle to another folder")  # fmt: skip
    folder = next(p for p in target.absolute().parents if p.exists())  # where the bundle is built, then renamed
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"can't write --out {target}: {folder} is not a writable folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    manifest = target / MANIFEST_NAME
    if not manifest.is_file():
        raise ExportError(f"--out {target} is a non-empty folder that is not a bundle; refusing to replace it")
    if not is_bundle_manifest(manifest):
        raise ExportError(f"--out {target} holds a {MANIFEST_NAME} that is not a lighthead-edge bundle's; refusing "
                          "to replace the folder")  # fmt: skip


@contextmanager
def atomic_directory(target: str | Path, log: Log | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block ends normally it replaces ``target``.

    If the block raises (or is interrupted), the temporary folder is removed and ``target`` is left as it was. Files
    in an old ``target`` that no lighthead-edge command writes (notes, a calibration folder) are kept: they are
    carried into the new folder (``log`` names them). The leftovers of writes to ``target`` killed earlier are
    removed first (see :func:`remove_leftovers`).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"can't write --out {target}: {exc.strerror}") from None
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a bundle is meant to be copied and shared
        yield tmp
        kept = _swap_in(tmp, target)
        if kept and log is not None:
            log(f"kept what the old {target} held besides the bundle: {', '.join(kept)}")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise ExportError(f"can't write --out {target}: {exc.strerror}; nothing was changed there") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_leftovers(target: Path) -> None:
    """Clean up after writes to ``target`` whose process is gone (a SIGKILLed export): ``.NAME.PID.*.partial``
    folders are removed; a ``.NAME.PID.*.old`` one (the previous bundle, moved aside just before the swap) is moved
    back when ``target`` is missing, else removed. Folders of a live process, or without a process id, are kept."""
    for kind in ("old", "partial"):  # an old bundle first: put back before anything else is touched
        for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.*.{kind}")):
            mine = re.fullmatch(rf"\.{re.escape(target.name)}\.(\d+)\.\w+\.{kind}", path.name)  # mkdtemp's name
            if not mine or not path.is_dir() or path.is_symlink() or process_alive(int(mine[1])):
                continue
            if kind == "old" and not target.exists():
                os.replace(path, target)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _tool_files(target: Path) -> set[str]:
    """The names in a bundle folder that lighthead-edge writes: every artifact and report file, the manifest and
    whatever its ``files`` lists."""
    names = {MANIFEST_NAME, MANIFEST_TMP, *REPORT_FILES}
    names.update(name for b in Backend for p in Precision for name in artifact_files(b, p))
    try:
        names.update(Path(name).parts[0] for name in read_manifest(target).get("files", {}))
    except (ExportError, OSError):
        pass
    return names


def _carry_over(old: Path, new: Path) -> list[str]:
    """Hard-link (or copy) what ``old`` holds besides the bundle into ``new``; the originals stay in ``old``."""
    ours = _tool_files(old)
    kept = sorted(p.name for p in old.iterdir() if p.name not in ours and not (new / p.name).exists())
    for name in kept:
        src, dst = old / name, new / name
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)
    return kept


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    if Path(src).is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap_in(new: Path, target: Path) -> list[str]:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first and deleted only afterwards, once
    what it held besides the bundle is in ``new`` (:func:`_carry_over`). Returns the names carried over."""
    if not target.exists():
        os.replace(new, target)
        return []
    kept = _carry_over(target, new)
    swap_directory(new, target)
    return kept


# ------------------------------------------------------------------------------------------------------ manifest
def model_metadata(
    model, class_names: list[str], source: Path | None, frame_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """What a runtime needs to feed the graph and read its outputs: stored in the manifest and in every artifact.

    ``source`` is the checkpoint the model was loaded from (its name and sha256 are recorded), or None for a model
    that exists only in memory. ``frame_size`` (h, w): a frame-in graph, whose input is the frame.
    """
    c = model.config
    h, w = frame_size or c.input_size
    return {
        "format": BUNDLE_FORMAT,
        "class_names": list(class_names),
        "labels": "1..C, label i is class_names[i - 1]; 0 only in unused output rows",
        "input": input_record(h, w),
        "preprocessing": _preprocessing(c, in_graph=frame_size is not None),
        "outputs": _outputs(c.detections_per_img, frame=frame_size is not None),
        "postprocessing": _postprocessing(c),
        "model": {
            "architecture": "light-head-rcnn",
            "backbone": c.backbone,
            "head_size": c.head_size,
            "config": {k: v for k, v in c.to_dict().items() if k != "input_size"},  # stored once, in input
        },
        "source_checkpoint": None if source is None else {"name": source.name, "sha256": sha256_file(source)},
    }


def _preprocessing(c, *, in_graph: bool) -> dict[str, Any]:
    letterbox_spec = {
        "size": list(c.input_size),  # (H, W) of the model's own input
        "in_graph": in_graph,  # true: the graph takes camera frames of input.shape and letterboxes them itself
        "scale": "min(H / h, W / w)",
        "resize": "bilinear (half-pixel centres) in float, rounded to uint8, to round(h * scale) x round(w * scale)",
        "placement": "top-left",
        "pad": "bottom and right",
        "pad_bgr": list(PAD_BGR),
    }
    steps = ["cast to float32", "BGR -> RGB", "NHWC -> NCHW", "(x - mean_rgb) / std_rgb"]
    if in_graph:
        steps[2:2] = ["letterbox to size (bilinear, half-pixel centres, rounded), boxes mapped back to the frame"]
    return {
        "letterbox": letterbox_spec,
        "in_graph": steps,
        "mean_rgb": list(c.pixel_mean),
        "std_rgb": list(c.pixel_std),
    }


def _outputs(d: int, *, frame: bool) -> dict[str, Any]:
    where = ("xyxy in frame pixels, clipped to the frame" if frame else
             "xyxy in input pixels (divide by the letterbox scale for the original image)")  # fmt: skip
    boxes = f"{where}; row i < num_detections is a detection, the other {d} - num_detections rows are zeros"
    return {
        "boxes": {"shape": [1, d, 4], "dtype": "float32", "meaning": boxes},
        "scores": {"shape": [1, d], "dtype": "float32", "meaning": "class probability, decreasing"},
        "labels": {"shape": [1, d], "dtype": "int64", "meaning": "1..C"},
        "num_detections": {"shape": [1], "dtype": "int64", "meaning": "valid rows"},
    }


def roi_slots(c) -> int:
    """P, the export graph's static number of post-NMS RoI slots for the model config ``c``: its
    ``rpn_post_nms_top_n_test``, at most the pre-NMS candidates (``rpn_pre_nms_top_n_test``, at most the anchors).
    :class:`~lighthead_edge.export.graph.ProposalSelector` computes the same from the anchors it holds."""
    h, w = c.input_size
    anchors = (h // c.stride) * (w // c.stride) * c.num_anchors
    return min(c.rpn_post_nms_top_n_test, c.rpn_pre_nms_top_n_test, anchors)


def with_rois(model: LightHeadRCNN, rois: int | None, log: Log) -> LightHeadRCNN:
    """``model`` itself for ``rois`` None; else a copy whose test-time RPN keeps ``rois`` proposals (its config's
    ``rpn_post_nms_top_n_test`` and its RPN's test settings), the caller's model untouched. The eager copy and the
    graph built from it give the same detections; ``log`` says how many RoI slots the graph gets and why, when
    that is fewer than asked."""
    if rois is None:
        return model
    config = dataclasses.replace(model.config, rpn_post_nms_top_n_test=rois)
    copy = deepcopy(model)
    copy.config = config
    copy.rpn.test_settings = dataclasses.replace(copy.rpn.test_settings, post_nms_top_n=rois)
    slots = roi_slots(config)
    if slots < rois:
        h, w = config.input_size
        anchors = (h // config.stride) * (w // config.stride) * config.num_anchors
        log(f"--rois {rois} is more than the RPN's {min(config.rpn_pre_nms_top_n_test, anchors)} pre-NMS candidates "
            f"(rpn_pre_nms_top_n_test {config.rpn_pre_nms_top_n_test}, {anchors} anchors): the graph has {slots} "
            "RoI slots")  # fmt: skip
    else:
        log(f"--rois {rois}: the graph has {slots} RoI slots")
    return copy


def _postprocessing(c) -> dict[str, Any]:
    rpn = {
        "pre_nms_top_n": c.rpn_pre_nms_top_n_test,
        "post_nms_top_n": c.rpn_post_nms_top_n_test,
        "nms_thresh": c.rpn_nms_thresh,
        "min_size": c.rpn_min_size,
    }
    return {
        "score_thresh": c.score_thresh,
        "nms_thresh": c.nms_thresh,
        "nms": "per class",
        "max_detections": c.detections_per_img,
        "class_agnostic_regression": c.class_agnostic_reg,
        "rois": roi_slots(c),
        "rpn": rpn,
    }


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------------ artifacts
def write_artifacts(model, root: Path, settings: ExportSettings, meta: dict[str, Any], log: Log) -> list[dict]:
    """Export the graph(s) into ``root``; returns the manifest's artifact entries."""
    from lighthead_edge.export.graph import build_export_model
    from lighthead_edge.export.onnx import export_onnx

    backend_of = {ExportFormat.ONNX: Backend.ONNXRUNTIME, ExportFormat.OPENVINO: Backend.OPENVINO}
    wanted = [backend_of[f] for f in settings.formats]
    # one ONNX graph per backend: onnxruntime's has the normalisation folded into the first conv, OpenVINO's does
    # not (see export.graph.FoldedPreprocess); the hidden one is only OpenVINO's source
    onnx_files: dict[Backend, Path] = {}
    for backend in wanted:
        method = settings.method_for(backend)
        keep = backend is Backend.ONNXRUNTIME
        path = root / (artifact_files(backend, Precision.FP32)[0] if keep else f".{method}.onnx")
        log(f"exporting ONNX (opset {settings.opset}, PS-RoIAlign {method}) -> {path.name}")
        graph = build_export_model(model, method=method, engine=backend.value, frame_size=settings.frame_size)
        if graph.num_rois != meta["postprocessing"]["rois"]:  # the manifest must describe the graph it ships
            raise ExportError(f"the graph has {graph.num_rois} RoI slots, the manifest says "
                              f"{meta['postprocessing']['rois']}")  # fmt: skip
        export_onnx(graph, path, opset=settings.opset, metadata=meta)
        onnx_files[backend] = path
    entries = []
    if Backend.ONNXRUNTIME in wanted:
        method = settings.method_for(Backend.ONNXRUNTIME)
        entries.append(artifact_entry(Backend.ONNXRUNTIME, Precision.FP32, ps_roi_align_method=method,
                                      opset=settings.opset))  # fmt: skip
    if Backend.OPENVINO in wanted:
        entries += _write_openvino(root, onnx_files[Backend.OPENVINO], settings, meta, log)
    for path in onnx_files.values():
        if path.name.startswith("."):
            path.unlink()
    return entries


def _write_openvino(root: Path, onnx_path: Path, settings: ExportSettings, meta: dict, log: Log) -> list[dict]:
    from lighthead_edge.export.openvino import convert_onnx

    entries = []
    method = settings.method_for(Backend.OPENVINO)
    for precision in (Precision.FP32, Precision.FP16):
        xml, _ = artifact_files(Backend.OPENVINO, precision)
        log(f"converting to OpenVINO IR {precision.value.upper()} -> {xml}")
        convert_onnx(onnx_path, root / xml, precision=precision, metadata=meta)
        entries.append(artifact_entry(Backend.OPENVINO, precision, ps_roi_align_method=method))
    return entries


def _write_handoffs(
    root: Path, ovms_repo: Path | None, artifacts: list[dict], settings: ExportSettings, meta: dict, log: Log
) -> dict[str, Any]:  # fmt: skip
    """The hand-offs asked for (:mod:`lighthead_edge.export.handoff`), from the IRs just written to ``root``; returns
    the manifest's ``handoffs`` record ({} for none)."""
    handoffs: dict[str, Any] = {}
    if settings.layout is handoff.HandoffLayout.DETECTION_OUTPUT:
        irs = [Precision(a["precision"]) for a in artifacts if a["backend"] == Backend.OPENVINO.value]
        handoffs[handoff.DETECTION_OUTPUT] = handoff.add_detection_output(root, irs, meta, log)
    if ovms_repo is not None:
        handoffs["ovms"] = handoff.write_ovms_repository(ovms_repo, root, handoffs, settings.ovms_name, log)
    return handoffs


# ------------------------------------------------------------------------------------------------------- pipeline
def export_bundle(
    model: LightHeadRCNN, class_names: Sequence[str], out: str | Path, settings: ExportSettings | None = None, *,
    source: str | Path | None = None, log: Log = _stderr,
) -> Path:  # fmt: skip
    """Export ``model`` (in eval mode) to the bundle folder ``out``, atomically; see the module docstring.

    ``source`` is the checkpoint the model was loaded from, recorded in the manifest's ``source_checkpoint`` (name and
    sha256); None (a model that exists only in memory) records null. ``log`` gets one line per step; an exception it
    raises (e.g. KeyboardInterrupt) aborts the export cleanly.
    """
    settings = settings or ExportSettings()
    out, source = Path(out), None if source is None else Path(source)
    if model.training:
        raise ExportError("export_bundle needs a model in eval mode; call model.eval() first")
    if len(class_names) != model.config.num_classes:
        raise ExportError(f"{len(class_names)} class names for a {model.config.num_classes}-class model")
    check_target(out, {"CHECKPOINT": source, "--val": settings.val_json})
    handoff.check_ovms_target(settings.ovms, out)
    model = with_rois(model, settings.rois, log)  # a copy: the caller's model keeps its own RoI count
    meta = model_metadata(model, list(class_names), source, settings.frame_size)
    ovms_stage = handoff.ovms_stage(settings.ovms, log, remove_leftovers=remove_leftovers)  # beside --ovms
    with atomic_directory(out, log) as tmp, ovms_stage as ovms_repo:
        artifacts = write_artifacts(model, tmp, settings, meta, log)
        handoffs = _write_handoffs(tmp, ovms_repo, artifacts, settings, meta, log)
        producer = {p: _version(p) for p in ("lighthead-edge", "torch", "onnx", "openvino", "onnxruntime")}
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest = {**meta, "created": created, "producer": producer, "artifacts": artifacts}
        if handoffs:
            manifest["handoffs"] = handoffs
        files = [name for entry in artifacts for name in entry["files"]] + handoff.handoff_files(handoffs)
        manifest["files"] = file_records(tmp, files)
        write_manifest(tmp, manifest)
        manifest["measurements"] = export_measurements(model, load_bundle(tmp), val_json=settings.val_json,
                                                       threads=settings.threads, runs=settings.latency_runs, log=log)
        write_manifest(tmp, manifest)
        log(f"measured: {summary_line(manifest['measurements']['results'])}")
    log(f"wrote {out} ({', '.join(a['backend'] + '/' + a['precision'] for a in artifacts)})")
    return out

