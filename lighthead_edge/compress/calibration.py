"""Calibration sets for INT8 post-training quantization: images from a folder, a COCO json or a video file.

Every image goes through the runtime's own preprocessing (the letterbox of
:meth:`~lighthead_edge.runtime.detector.Detector.preprocess`, with the size and pad colour from the bundle's
manifest), so the quantizer sees exactly the uint8 ``[1, H, W, 3]`` inputs that deployment feeds the graph.

    calib = build_calibration_set("frames/", input_size=(512, 512), size=300, selection="diverse")
    calib.inputs[0].shape  # (1, 512, 512, 3) uint8

Selection is ``uniform`` (evenly spaced over the sorted source, which for a video means evenly spaced in time) or
``diverse`` (greedy k-center over a cheap descriptor: an 8x8 colour thumbnail plus per-channel histograms, so near
duplicate frames of a static camera don't crowd out the rare scenes). Unreadable images are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.data.cocojson import image_paths
from lighthead_edge.data.transforms import PAD_BGR, letterbox
from lighthead_edge.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
DEFAULT_SIZE = 300
DIVERSE_POOL = 4  # diverse selection picks from up to this many times `size` evenly spaced candidates


class Selection(str, Enum):
    """How the calibration images are chosen from the source."""

    UNIFORM = "uniform"
    DIVERSE = "diverse"


@dataclass
class CalibrationSet:
    """The preprocessed calibration inputs and what happened while collecting them.

    Attributes:
        inputs: ndarray[1, H, W, 3] uint8 each, letterboxed like the runtime does.
        source: the folder, json or video they came from.
        candidates: how many images (or frames) the source offered.
        skipped: names of the unreadable ones that were skipped.
        names: the name (file or ``frame N``) of each input.
    """

    inputs: list[np.ndarray]
    source: str
    candidates: int
    skipped: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.inputs)

    def summary(self) -> str:
        """One line: how many inputs, from where, and how many were skipped."""
        bad = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        return f"calibration: {len(self)} of {self.candidates} images from {self.source}{bad}"


# ------------------------------------------------------------------------------------------------------- sources
class _Source:
    """Readable items of a calibration source: ``count`` of them, read in ascending index order."""

    count: int

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, str, np.ndarray | None]]:
        raise NotImplementedError


class _Files(_Source):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.count = len(paths)

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, str, np.ndarray | None]]:
        for i in sorted(indices):
            path = self.paths[i]
            try:
                image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
            except (OSError, ValueError, cv2.error):
                image = None  # missing, unreadable or zero-length: counted by the caller
            yield i, path.name, image


class _Video(_Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise DataError(f"calibration video {path} can't be opened; is it a video file OpenCV can decode?")
            self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, str, np.ndarray | None]]:
        # grab() every frame and decode only the wanted ones: seeking by index is unreliable in many containers
        wanted = sorted(set(indices))
        capture = cv2.VideoCapture(str(self.path))
        try:
            position = 0
            for i in wanted:
                ok = True
                while position < i and ok:
                    ok = capture.grab()
                    position += 1
                ok, frame = capture.read() if ok else (False, None)
                position += 1
                yield i, f"frame {i}", frame if ok else None
        finally:
            capture.release()


def open_source(source: str | Path) -> _Source:
    """An image folder (searched recursively), a COCO json or a video file -> its readable items."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return _Files(files)
    if not path.is_file():
        raise DataError(f"calibration source {path} not found; give an image folder, a COCO json or a video file")
    if path.suffix.lower() == ".json":
        return _Files(image_paths(path))
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _Video(path)
    raise DataError(f"calibration source {path} is neither a folder, a .json nor a video ({', '.join(VIDEO_SUFFIXES)})")


# ----------------------------------------------------------------------------------------------------- selection
def evenly_spaced(count: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(count)`` (all of them when ``k >= count``)."""
    if k >= count:
        return list(range(count))
    return sorted({int(round(x)) for x in np.linspace(0, count - 1, k)})


def descriptor(image_bgr: np.ndarray) -> np.ndarray:
    """A cheap appearance descriptor: an 8x8 colour thumbnail and 16-bin per-channel histograms, in [0, 1]."""
    thumb = cv2.resize(image_bgr, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255.0
    hists = [cv2.calcHist([image_bgr], [c], None, [16], [0, 256]).ravel() for c in range(3)]
    hist = np.concatenate(hists) / max(1, image_bgr.shape[0] * image_bgr.shape[1])
    return np.concatenate([thumb, 4.0 * hist]).astype(np.float32)  # x4: histograms weigh about as much as layout


def k_center(features: np.ndarray, k: int) -> list[int]:
    """Greedy k-center: start at the item nearest the mean, then add the item farthest from all chosen ones."""
    n = features.shape[0]
    if k >= n:
        return list(range(n))
    first = int(np.argmin(np.linalg.norm(features - features.mean(0), axis=1)))
    chosen = [first]
    dist = np.linalg.norm(features - features[first], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(features - features[nxt], axis=1))
    return sorted(chosen)


# ------------------------------------------------------------------------------------------------------ building
def build_calibration_set(
    source: str | Path,
    *,
    input_size: tuple[int, int],
    pad_bgr: tuple[int, int, int] = PAD_BGR,
    size: int = DEFAULT_SIZE,
    selection: Selection | str = Selection.UNIFORM,
) -> CalibrationSet:
    """Choose up to ``size`` images of ``source`` and letterbox them to ``input_size`` as the runtime does.

    Raises:
        DataError: the source is missing, or not one readable image came out of it.
    """
    if size < 1:
        raise ConfigError(f"calibration size must be >= 1, got {size}")
    try:
        selection = Selection(selection)
    except ValueError:
        raise ConfigError(f"unknown calibration selection {selection!r}; choose uniform or diverse") from None
    src = open_source(source)
    skipped: list[str] = []
    if selection is Selection.DIVERSE and src.count > size:
        pool, feats = [], []
        for i, name, image in src.read(evenly_spaced(src.count, DIVERSE_POOL * size)):
            if image is None:
                skipped.append(name)
                continue
            pool.append(i)
            feats.append(descriptor(image))
        wanted = [pool[j] for j in k_center(np.stack(feats), size)] if feats else []
    else:
        wanted = evenly_spaced(src.count, size)
    calib = CalibrationSet([], str(source), src.count, skipped)
    for _, name, image in src.read(wanted):
        if image is None:
            calib.skipped.append(name)
            continue
        calib.inputs.append(letterbox(image, input_size, pad_bgr=pad_bgr)[0][None])
        calib.names.append(name)
    if not calib.inputs:
        bad = f" ({len(calib.skipped)} unreadable)" if calib.skipped else ""
        raise DataError(f"no usable calibration images in {source}{bad}; give a folder, COCO json or video with images")
    return calib


def calibration_set_for_bundle(source: str | Path, bundle, **kwargs) -> CalibrationSet:
    """:func:`build_calibration_set` with the input size and pad colour of ``bundle`` (a path or ``Bundle``)."""
    from lighthead_edge.runtime.bundle import Bundle, load_bundle

    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=False)
    return build_calibration_set(source, input_size=bundle.input_size, pad_bgr=bundle.pad_bgr, **kwargs)
