"""The bundle schema, torch-free: file names, manifest entries, the manifest writer and the reader.

A bundle is the exported artifacts of one model plus ``manifest.json``. ``lighthead-edge export`` writes it (see
:mod:`lighthead_edge.export.bundle` for what the manifest holds); ``quantize`` adds INT8 artifacts and, like
``bench``, its report::

    bundle/
      manifest.json
      model.onnx                       onnxruntime, fp32           (artifact_files(backend, precision))
      model_int8.onnx                  onnxruntime, int8
      model_fp32.xml, model_fp32.bin   openvino, fp32
      model_fp16.xml, model_fp16.bin   openvino, fp16 weights
      model_int8.xml, model_int8.bin   openvino, int8
      report.md, report.json, report.png                            (REPORT_FILES)

``manifest.json`` lists the sha256 and size of every other file (``files``), and its own digest
(``manifest_sha256``, :func:`manifest_digest`: the sha256 of its canonical JSON without that key); :func:`load_bundle`
checks them all before anything is loaded, so a tampered, truncated or half-copied bundle, or a manifest edited by
hand (a class name, the input size), is refused with a :class:`BundleError` that says which file is wrong; so is a
manifest whose entries have the wrong type or shape (:func:`schema_problem`), or whose artifact path is not one of
its checksummed files. The model metadata (class names, input, pre- and postprocessing) is also inside every artifact
(ONNX ``metadata_props``, OpenVINO ``rt_info``), covered by the artifact's checksum: the
:class:`~lighthead_edge.runtime.detector.Detector` compares the manifest's class names and input shape with it, so a
manifest relabelled with its digest recomputed (or a format-2 one, which has none) is refused too. The model's input
size is stored once, as ``input.shape`` ([1, H, W, 3], the shape of the graph's input), also checked against the
loaded graph.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from lighthead_edge.errors import ExportError

BUNDLE_FORMAT = "lighthead-edge/bundle/3"  # 3: the manifest's own digest; 2: the size only in input.shape
FORMAT_PREFIX = "lighthead-edge/bundle/"  # what every bundle's format starts with, of any version
UNDIGESTED_FORMATS = ("lighthead-edge/bundle/2", "lighthead-edge/bundle/1")  # read without a digest (1 and 2 alike)
READABLE_FORMATS = (BUNDLE_FORMAT, *UNDIGESTED_FORMATS)
MANIFEST_NAME = "manifest.json"
DIGEST_KEY = "manifest_sha256"
MANIFEST_TMP = f".{MANIFEST_NAME}.tmp"
REPORT_FILES = ("report.md", "report.json", "report.png")
_CHUNK = 1 << 20


class BundleError(ExportError):
    """A bundle that is missing, incomplete, modified after export, or of another format version."""


class Backend(str, Enum):
    """The inference engines a bundle's artifacts are made for."""

    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class Precision(str, Enum):
    """Numeric precision of an artifact's weights (fp16 IRs still compute in f32 on CPU)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class Artifact:
    """One runnable model file of a bundle.

    Attributes:
        backend, precision: what it is for.
        format: ``"onnx"`` or ``"openvino-ir"``.
        path: the file to load, relative to the bundle root (the ``.xml`` of an IR).
        files: every file it needs (an IR's ``.xml`` and ``.bin``), relative to the root.
        info: the rest of its manifest entry (PS-RoIAlign method, export-time measurements, ...).
    """

    backend: Backend
    precision: Precision
    format: str
    path: str
    files: tuple[str, ...]
    info: dict[str, Any]

    @property
    def key(self) -> str:
        """``"backend/precision"``, as used in messages and metric tables."""
        return f"{self.backend.value}/{self.precision.value}"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its root folder and manifest, with typed accessors for what the runtime needs."""

    root: Path
    manifest: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        """Label ``i`` (1..C) is ``class_names[i - 1]``."""
        return list(self.manifest["class_names"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The graph's input shape, (1, H, W, 3) NHWC: the one place the manifest stores the input size."""
        return tuple(int(d) for d in self.manifest["input"]["shape"])

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the graph's input: what the host letterboxes a frame to (the frame size of a frame-in bundle)."""
        _, h, w, _ = self.input_shape
        return h, w

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(h, w) of the camera frames a frame-in bundle (``export --frame-size``) takes as they are; else None."""
        return self.input_size if self.manifest["preprocessing"]["letterbox"].get("in_graph") is True else None

    @property
    def model_size(self) -> tuple[int, int]:
        """(H, W) of the model's own input, after the letterbox (in the graph or on the host)."""
        size = self.manifest["preprocessing"]["letterbox"].get("size")
        return (int(size[0]), int(size[1])) if size is not None else self.input_size

    @property
    def pad_bgr(self) -> tuple[int, int, int]:
        b, g, r = self.manifest["preprocessing"]["letterbox"]["pad_bgr"]
        return int(b), int(g), int(r)

    @property
    def artifacts(self) -> list[Artifact]:
        return [_artifact(entry) for entry in self.manifest["artifacts"]]

    def artifact(self, backend: Backend | str, precision: Precision | str | None = None) -> Artifact:
        """The artifact for ``backend`` at ``precision`` (fp32 when there is one and None is asked, else the first)."""
        backend = _enum(Backend, backend, "backend")
        wanted = None if precision is None else _enum(Precision, precision, "precision")
        mine = [a for a in self.artifacts if a.backend is backend]
        if wanted is None:
            mine.sort(key=lambda a: a.precision is not Precision.FP32)
        else:
            mine = [a for a in mine if a.precision is wanted]
        if not mine:
            have = ", ".join(a.key for a in self.artifacts) or "none"
            ask = backend.value + ("" if wanted is None else f"/{wanted.value}")
            raise BundleError(f"bundle {self.root} has no {ask} artifact (it has: {have}); export it with that format")
        return mine[0]

    def path(self, artifact: Artifact) -> Path:
        return self.root / artifact.path


def _enum(kind: type[Enum], value: Enum | str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise BundleError(f"unknown {what} {value!r}; choose one of {choices}") from None


def _artifact(entry: dict[str, Any]) -> Artifact:
    known = ("backend", "precision", "format", "path", "files")
    return Artifact(
        backend=Backend(entry["backend"]),
        precision=Precision(entry["precision"]),
        format=str(entry["format"]),
        path=str(entry["path"]),
        files=tuple(entry["files"]),
        info={k: v for k, v in entry.items() if k not in known},
    )


# ------------------------------------------------------------------------------------------------------ schema
ARTIFACT_FORMATS = {Backend.ONNXRUNTIME: "onnx", Backend.OPENVINO: "openvino-ir"}


def artifact_files(backend: Backend, precision: Precision) -> list[str]:
    """The files of one artifact, the one to load first: ``model.onnx`` (onnxruntime fp32), ``model_int8.onnx``,
    ``model_fp32.xml`` + ``.bin``, ``model_fp16.xml`` + ``.bin``, ``model_int8.xml`` + ``.bin``."""
    if backend is Backend.ONNXRUNTIME:
        return ["model.onnx" if precision is Precision.FP32 else f"model_{precision.value}.onnx"]
    return [f"model_{precision.value}.xml", f"model_{precision.value}.bin"]


def artifact_entry(backend: Backend, precision: Precision, **info: Any) -> dict[str, Any]:
    """The manifest entry of an artifact whose files (:func:`artifact_files`) are in the bundle; ``info`` is the
    rest (``ps_roi_align_method``, ``opset``, ``quantization``, ...), read back as :attr:`Artifact.info`."""
    files = artifact_files(backend, precision)
    return {"backend": backend.value, "precision": precision.value, "format": ARTIFACT_FORMATS[backend],
            "path": files[0], "files": files, **info}  # fmt: skip


def input_record(height: int, width: int) -> dict[str, Any]:
    """The manifest's ``input``: what the graph takes, read back by :attr:`Bundle.input_shape`."""
    return {"name": "images", "shape": [1, int(height), int(width), 3], "dtype": "uint8", "layout": "NHWC",
            "channel_order": "BGR"}  # fmt: skip


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (IR weights may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(root: Path, name: str) -> dict[str, Any]:
    """The manifest record of ``root / name``: ``{"sha256": ..., "bytes": ...}``."""
    path = root / name
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of ``root``, checked for format and required keys (files not verified)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle {root} not found; pass the folder that `lighthead-edge export --out` wrote")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}: not a bundle, or an unfinished copy; re-export it")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupt ({exc.__class__.__name__}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path} has format {found!r}; this runtime reads {BUNDLE_FORMAT!r}")
    missing = [k for k in ("class_names", "input", "preprocessing", "artifacts", "files") if k not in manifest]
    if manifest["format"] not in UNDIGESTED_FORMATS and DIGEST_KEY not in manifest:
        missing.append(DIGEST_KEY)
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)}; it was not written by lighthead-edge export")
    if DIGEST_KEY in manifest and manifest[DIGEST_KEY] != manifest_digest(manifest):
        raise BundleError(f"{path} was modified after export ({DIGEST_KEY} mismatch); re-export the bundle")
    problem = schema_problem(manifest)
    if problem:
        raise BundleError(f"{path}: {problem}; it was not written by lighthead-edge export, re-export the bundle")
    return manifest


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)  # not bool, not 128.0


def _is_name(value: Any) -> bool:
    """A file name inside the bundle: relative, no ``..``, not the bundle itself."""
    return (isinstance(value, str) and value not in ("", ".") and not value.startswith(("/", "\\"))
            and ".." not in value.replace("\\", "/").split("/") and Path(value).parts != ())  # fmt: skip


def schema_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the types and shapes of a manifest's entries the runtime reads, or None: class names,
    ``input.shape`` [1, H, W, 3], ``pad_bgr``, the artifacts and the file records."""
    names = manifest["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        return "class_names is not a list of non-empty names"
    shape = manifest["input"].get("shape") if isinstance(manifest["input"], dict) else None
    if not (isinstance(shape, list) and len(shape) == 4 and shape[0] == 1 and shape[3] == 3
            and all(_is_int(d, 1, 1 << 16) for d in shape)):  # fmt: skip
        return f"input.shape is {shape!r}, not [1, H, W, 3] with positive H and W"
    letterbox = manifest["preprocessing"].get("letterbox") if isinstance(manifest["preprocessing"], dict) else None
    pad = letterbox.get("pad_bgr") if isinstance(letterbox, dict) else None
    if not (isinstance(pad, list) and len(pad) == 3 and all(_is_int(v, 0, 255) for v in pad)):
        return f"preprocessing.letterbox.pad_bgr is {pad!r}, not 3 integers in 0..255"
    size = letterbox.get("size", [1, 1])
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(d, 1, 1 << 16) for d in size)):
        return f"preprocessing.letterbox.size is {size!r}, not [H, W] with positive H and W"
    if not isinstance(letterbox.get("in_graph", False), bool):
        return f"preprocessing.letterbox.in_graph is {letterbox.get('in_graph')!r}, not true or false"
    files = manifest["files"]
    if not isinstance(files, dict) or not all(
        _is_name(k) and isinstance(r, dict) and isinstance(r.get("sha256"), str) and _is_int(r.get("bytes"), 0)
        for k, r in files.items()
    ):
        return "files is not a map of file names inside the bundle to their sha256 and bytes"
    artifacts = manifest["artifacts"]
    if not isinstance(artifacts, list) or not artifacts:
        return "artifacts is not a non-empty list"
    return next(filter(None, (_artifact_problem(a, files) for a in artifacts)), None)


def _artifact_problem(entry: Any, files: dict[str, Any]) -> str | None:
    if not isinstance(entry, dict):
        return f"an artifact entry is {entry!r}, not an object"
    backends, precisions = [b.value for b in Backend], [p.value for p in Precision]
    if entry.get("backend") not in backends or entry.get("precision") not in precisions:
        return f"an artifact has backend {entry.get('backend')!r} and precision {entry.get('precision')!r}"
    key = f"{entry['backend']}/{entry['precision']}"
    if entry.get("format") != ARTIFACT_FORMATS[Backend(entry["backend"])]:
        return f"artifact {key} has format {entry.get('format')!r}"
    names = entry.get("files")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in files for n in names):
        return f"artifact {key} has files {names!r}, not a list of checksummed files"
    if entry.get("path") not in names:
        return f"artifact {key} has path {entry.get('path')!r}, not one of its checksummed files {names}"
    return None


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The sha256 of ``manifest`` without its own digest, as canonical JSON (sorted keys, no spaces, ASCII): how
    the manifest is written (indented or not) does not change it, any change of a value does."""
    content = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def is_bundle_manifest(path: str | Path) -> bool:
    """Whether ``path`` is a ``manifest.json`` written by lighthead-edge (any format version): a JSON object whose
    ``format`` starts with ``lighthead-edge/bundle/``. A web app's manifest, or an unreadable file, is not."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(FORMAT_PREFIX)


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Raise :class:`BundleError` unless every listed file exists with its recorded size and sha256 (``manifest``
    as :func:`read_manifest` returns it: every artifact file listed, every name inside the bundle)."""
    files: dict[str, dict[str, Any]] = manifest["files"]  # names inside the bundle: checked by read_manifest
    for name, record in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {root} is incomplete: {name} is missing; re-export or re-copy it")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise BundleError(
                f"bundle {root}: {name} is {size} bytes, {record['bytes']} expected (truncated or replaced); "
                "re-export or re-copy it"
            )
        if sha256_file(path) != record["sha256"]:
            raise BundleError(f"bundle {root}: {name} was modified after export (sha256 mismatch); re-export it")


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle's manifest and, unless ``verify=False``, check every file against its checksum."""
    root = Path(path)
    manifest = read_manifest(root)
    if verify:
        verify_files(root, manifest)
    return Bundle(root, manifest)


# ------------------------------------------------------------------------------------------------------ writer
def write_manifest(root: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``root/manifest.json`` atomically (beside it, then renamed): a reader sees the old or the new one.

    Its digest (:func:`manifest_digest`) is computed afresh; returns the manifest as written (and as read back).
    """
    root = Path(root)
    written = json.loads(json.dumps({k: v for k, v in manifest.items() if k != DIGEST_KEY}))  # as a reader sees it
    written[DIGEST_KEY] = manifest_digest(written)
    tmp = root / MANIFEST_TMP
    tmp.write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
    return written


def file_records(root: str | Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "bytes"}}`` of ``names`` in ``root``: the manifest's ``files``."""
    return {name: file_record(Path(root), name) for name in names}


def update_manifest(
    root: str | Path, *, entries: Sequence[dict[str, Any]] = (), measurements: dict[str, Any] | None = None,
    files: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """Add to a bundle's manifest and record the checksums; returns the new manifest (written atomically).

    Args:
        entries: artifact entries (:func:`artifact_entry`) whose files are already in ``root``; each replaces any
            entry of the same backend and precision, and every artifact file is checksummed again.
        measurements: merged into ``measurements``, its ``results`` merged by key.
        files: other files in ``root`` to cover by the checksums, e.g. :data:`REPORT_FILES`.
    """
    root = Path(root)
    manifest = read_manifest(root)
    new = {(e["backend"], e["precision"]) for e in entries}
    artifacts = [a for a in manifest["artifacts"] if (a["backend"], a["precision"]) not in new] + list(entries)
    artifact_names = [name for entry in artifacts for name in entry["files"]]
    old_artifact_names = {name for entry in manifest["artifacts"] for name in entry["files"]}
    others = {k: v for k, v in manifest["files"].items() if k not in old_artifact_names and k not in files}
    manifest["artifacts"] = artifacts
    manifest["files"] = {**file_records(root, artifact_names), **others, **file_records(root, files)}
    if measurements:
        old = manifest.get("measurements", {})
        manifest["measurements"] = {**old, **measurements, "results": {**old.get("results", {}),
                                                                      **measurements.get("results", {})}}  # fmt: skip
    return write_manifest(root, manifest)
