"""Synthetic COCO scenes of four shape classes, made so that a detector has to learn something real.

Each scene is a textured background (colour gradients, multi-octave noise, stripes or checkers, often blended),
unlabelled clutter (lines, needle-thin ellipses, crosses, blotches), and 1-8 labelled shapes of 16 px to 45% of the
short side with random colours that contrast with what lies under them. Later shapes may cover earlier ones, but a
placement that would hide more than ~40% of an earlier shape is re-drawn, and any shape less than half visible at the
end loses its label. Boxes are the tight box of each shape's *visible* pixels, measured on the drawn mask.

Every image has its own generator seeded by ``(seed, split, index)``: train and val never share a random stream, and
any image can be re-rendered on its own (the tests do this to check boxes against masks).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.data.cocojson import claim_dataset_folder
from lighthead_edge.errors import ConfigError, DataError, OutputError

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MIN_OBJECT_PX = 16  # smallest box side worth labelling at stride 16
MAX_OBJECT_FRAC = 0.45  # of the short side
MIN_VISIBLE = 0.5  # a shape less visible than this is not labelled
_PLACE_VISIBLE = 0.6  # placements keep earlier shapes this visible, leaving room for clutter drawn on top
_SPLITS = {"train": 0, "val": 1}
_JPEG_QUALITY = 95
DESCRIPTION = "lighthead-edge synthetic shapes"  # how a set of ours starts its info.description (may be replaced)


@dataclass
class Scene:
    """One rendered scene, before JPEG encoding.

    Attributes:
        image (ndarray[H, W, 3] uint8): BGR.
        boxes (ndarray[N, 4] float32): xyxy, the tight box of each visible mask (pixel edges, see ``transforms``).
        labels (ndarray[N] int64): class indices into ``CLASSES`` (COCO category id = label + 1).
        masks (ndarray[N, H, W] bool): the visible pixels of each labelled shape.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _two_colours(rng: np.random.Generator, min_dist: float) -> tuple[np.ndarray, np.ndarray]:
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    for _ in range(8):
        c1 = rng.uniform(0, 255, 3).astype(np.float32)
        if np.linalg.norm(c1 - c0) >= min_dist:
            break
    return c0, c1


def _ramp(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Map ``t`` in 0..1 ``[H, W]`` to colours between ``c0`` and ``c1``: ``[H, W, 3]`` float32."""
    return c0 + t[..., None] * (c1 - c0)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = _grid(h, w)
    if rng.random() < 0.7:
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:  # radial
        t = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _ramp(t, *_two_colours(rng, 60))


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Perlin-like value noise: a few octaves of upsampled random grids."""
    base = int(rng.integers(3, 9))
    t = np.zeros((h, w), np.float32)
    for octave in range(3):
        g = base * 2**octave
        t += 0.5**octave * cv2.resize(rng.random((g, g), np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    out = _ramp(t, *_two_colours(rng, 80))
    if rng.random() < 0.5:  # some colour variation, not just luminance
        g = int(rng.integers(2, 6))
        out += cv2.resize(rng.uniform(-40, 40, (g, g, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return out


def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Stripes or a checkerboard at a random angle and period."""
    yy, xx = _grid(h, w)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 40)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    if rng.random() < 0.5:
        t = 0.5 + 0.5 * np.tanh(rng.uniform(1, 6) * np.sin(2 * np.pi * u))
    else:
        v = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
        t = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    return _ramp(t.astype(np.float32), *_two_colours(rng, 40))


_BACKGROUNDS = (_gradient, _noise, _pattern)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``[H, W, 3]`` float32 BGR, 0..255: one texture kind, often blended with a second."""
    canvas = _BACKGROUNDS[rng.integers(3)](rng, h, w)
    if rng.random() < 0.5:
        mix = rng.uniform(0.2, 0.5)
        canvas = (1 - mix) * canvas + mix * _BACKGROUNDS[rng.integers(3)](rng, h, w)
    return canvas


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def _blotch(rng: np.random.Generator, canvas: np.ndarray, short: int) -> None:
    """An irregular, semi-transparent stain: thresholded noise under a radial falloff."""
    h, w = canvas.shape[:2]
    s = int(rng.integers(12, max(13, int(0.3 * short))))
    x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
    noise = cv2.resize(rng.random((5, 5), np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1) * 2 - 1
    alpha = np.clip((noise * (1 - xx**2 - yy**2) - 0.2) * 6, 0, 1) * rng.uniform(0.4, 0.9)
    roi = canvas[y0 : y0 + s, x0 : x0 + s]
    roi += alpha[..., None] * (np.float32(_random_colour(rng)) - roi)


def _clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Unlabelled distractors drawn in place on the background: lines, needle ellipses, crosses, blotches."""
    h, w = canvas.shape[:2]
    short = min(h, w)
    for _ in range(int(rng.integers(2, 10))):
        kind = rng.integers(4)
        colour = _random_colour(rng)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            end = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(canvas, (cx, cy), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:  # aspect 5..12: never mistaken for a mildly stretched circle
            major = rng.uniform(10, 0.4 * short)
            axes = (int(major), max(1, int(major / rng.uniform(5, 12))))
            thickness = -1 if rng.random() < 0.6 else 2
            cv2.ellipse(canvas, (cx, cy), axes, rng.uniform(0, 180), 0, 360, colour, thickness, cv2.LINE_AA)
        elif kind == 2:
            arm, angle, thickness = rng.uniform(6, 30), rng.uniform(0, np.pi), int(rng.integers(2, 6))
            for a in (angle, angle + np.pi / 2):
                dx, dy = arm * np.cos(a), arm * np.sin(a)
                cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), colour, thickness)
        else:
            _blotch(rng, canvas, short)


def _shape_polygon(label: int, rng: np.random.Generator, extent: float) -> np.ndarray:
    """``[K, 2]`` float32 vertices of shape ``label`` around the origin, with a max box side of ``extent``."""
    if label == 0:  # circle (a polygon fine enough to be smooth with anti-aliasing)
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.ones_like(angles)
    elif label == 1:  # square
        angles, radii = np.pi / 4 + np.arange(4) * np.pi / 2, np.ones(4)
    elif label == 2:  # equilateral triangle
        angles, radii = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3, np.ones(3)
    else:  # five-pointed star
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    pts[:, rng.integers(2)] *= rng.uniform(0.8, 1.0)  # mild aspect variation
    theta = rng.uniform(0, 2 * np.pi)  # circles too: it turns the ellipse's axis
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T
    pts *= extent / np.ptp(pts, axis=0).max()
    return (pts - pts.min(axis=0)).astype(np.float32)  # top-left of its box at the origin


def _rasterise(pts: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage ``[h, w]`` uint8 (0..255) of a polygon whose box starts at the origin."""
    h, w = int(np.ceil(pts[:, 1].max())) + 1, int(np.ceil(pts[:, 0].max())) + 1
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return alpha


@dataclass
class _Placed:
    label: int
    area: int  # pixels of the whole shape
    visible: int  # pixels not covered by later shapes or clutter
    colour: np.ndarray  # BGR fill, so a shape on top of it can be told apart


def _contrasting_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random BGR colour at least ~100 away from each of ``avoid`` (what the shape will cover)."""
    for _ in range(12):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if all(np.linalg.norm(colour - c) >= 100 for c in avoid):
            return colour
    # The far corner of the colour cube from the background: >= 128 off in every channel.
    return np.where(avoid[0] > 127, 0, 255).astype(np.float32)


def _find_spot(
    rng: np.random.Generator, solid: np.ndarray, owner: np.ndarray, placed: list[_Placed]
) -> tuple[int, int, np.ndarray] | None:
    """A top-left ``(x, y)`` where the shape leaves every earlier shape visible enough, and what it would hide."""
    h, w = owner.shape
    sh, sw = solid.shape
    for _ in range(8):
        x, y = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
        hidden = np.bincount(owner[y : y + sh, x : x + sw][solid], minlength=len(placed) + 1)
        if all(p.visible - hidden[i + 1] >= _PLACE_VISIBLE * p.area for i, p in enumerate(placed)):
            return x, y, hidden
    return None


def _paint(
    rng: np.random.Generator, roi: np.ndarray, alpha: np.ndarray, solid: np.ndarray, avoid: list[np.ndarray]
) -> np.ndarray:
    """Blend a shaded fill into ``roi`` ``[h, w, 3]`` (in place) through coverage ``alpha``; returns its colour.

    The colour contrasts with the mean of what it covers and with ``avoid`` (the shapes it overlaps).
    """
    colour = _contrasting_colour(rng, [roi[solid].mean(axis=0), *avoid])
    h, w = alpha.shape
    angle = rng.uniform(0, 2 * np.pi)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    ramp = (xs[None, :] * np.cos(angle) + ys[:, None] * np.sin(angle)) / max(h, w)  # shading of about +-1
    fill = colour * (1 + rng.uniform(0, 0.25) * ramp)[..., None]
    roi += (alpha.astype(np.float32) / 255)[..., None] * (fill - roi)
    return colour


def _place_objects(rng: np.random.Generator, canvas: np.ndarray, owner: np.ndarray) -> list[_Placed]:
    """Draw 1-8 shapes on ``canvas`` in place; ``owner`` ``[H, W]`` uint8 records which shape (1-based) is on top."""
    h, w = owner.shape
    lo, hi = np.log(MIN_OBJECT_PX), np.log(MAX_OBJECT_FRAC * min(h, w))
    placed: list[_Placed] = []
    for _ in range(int(rng.integers(1, 9))):
        label = int(rng.integers(len(CLASSES)))
        alpha = _rasterise(_shape_polygon(label, rng, float(np.exp(rng.uniform(lo, hi)))))
        alpha = alpha[:h, :w]  # rounding can add a pixel past the image on the largest shapes
        solid = alpha >= 128
        spot = _find_spot(rng, solid, owner, placed)
        if spot is None:
            continue
        x, y, hidden = spot
        sh, sw = alpha.shape
        overlapped = [p.colour for i, p in enumerate(placed) if hidden[i + 1]]
        colour = _paint(rng, canvas[y : y + sh, x : x + sw], alpha, solid, overlapped)
        owner[y : y + sh, x : x + sw][solid] = len(placed) + 1
        for i, p in enumerate(placed):
            p.visible -= int(hidden[i + 1])
        area = int(solid.sum())
        placed.append(_Placed(label, area, area, colour))
    return placed


def _overdraw(rng: np.random.Generator, canvas: np.ndarray, owner: np.ndarray) -> None:
    """Sometimes one thin line across everything, so shapes are not always on top; it un-owns what it covers."""
    if rng.random() >= 0.3:
        return
    h, w = owner.shape
    line = np.zeros((h, w), np.uint8)
    p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    cv2.line(line, p0, p1, 255, int(rng.integers(1, 3)), cv2.LINE_AA)
    ys, xs = np.nonzero(line)
    a = (line[ys, xs].astype(np.float32) / 255)[:, None]
    canvas[ys, xs] += a * (np.float32(_random_colour(rng)) - canvas[ys, xs])
    owner[line >= 128] = 0


def _annotations(owner: np.ndarray, placed: list[_Placed]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``[N, 4]``, labels ``[N]`` and visible masks ``[N, H, W]`` of the shapes at least half visible."""
    boxes, labels, masks = [], [], []
    for i, p in enumerate(placed):
        mask = owner == i + 1
        if mask.sum() < MIN_VISIBLE * p.area:
            continue
        ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])  # pixel edges: a 1-pixel mask has a 1x1 box
        labels.append(p.label)
        masks.append(mask)
    h, w = owner.shape
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(masks, bool).reshape(-1, h, w),
    )


def _camera(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Mild blur, exposure jitter and sensor noise; returns uint8."""
    if rng.random() < 0.4:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.4, 1.0))
    canvas = canvas * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
    sigma = rng.uniform(0, 6)
    if sigma > 1:
        canvas += rng.standard_normal(canvas.shape, np.float32) * np.float32(sigma)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def render_scene(index: int, *, split: str = "train", seed: int = 0, size: tuple[int, int] = (320, 320)) -> Scene:
    """Render image ``index`` of ``split`` exactly as :func:`generate_dataset` does (before JPEG encoding).

    Args:
        index: position in the split; with ``split`` and ``seed`` it seeds this image's own generator.
        size: ``(H, W)`` of the image.
    """
    if split not in _SPLITS:
        raise DataError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    h, w = size
    canvas = _background(rng, h, w).astype(np.float32)
    _clutter(rng, canvas)
    owner = np.zeros((h, w), np.uint8)
    placed = _place_objects(rng, canvas, owner)
    _overdraw(rng, canvas, owner)
    boxes, labels, masks = _annotations(owner, placed)
    return Scene(_camera(rng, canvas), boxes, labels, masks)


def _write_split(out_dir: Path, split: str, count: int, *, size: tuple[int, int], seed: int, progress: bool) -> dict:
    """Render and write ``count`` JPEGs of ``split``; returns the COCO dict."""
    images, annotations = [], []
    for index in range(count):
        scene = render_scene(index, split=split, seed=seed, size=size)
        file_name = f"images/{split}_{index:06d}.jpg"
        if not cv2.imwrite(str(out_dir / file_name), scene.image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise OutputError(f"could not write {out_dir / file_name}; check that the folder is writable and not full")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
        for box, label, mask in zip(scene.boxes, scene.labels, scene.masks, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(mask.sum()),  # visible pixels, as COCO does with segment areas
                    "iscrowd": 0,
                }
            )
        if progress and (index + 1 == count or (index + 1) % 100 == 0):
            print(f"synth {split}: {index + 1}/{count} images", file=sys.stderr)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    info = {"description": f"{DESCRIPTION}, {split}, seed {seed}"}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def generate_dataset(
    out_dir: str | os.PathLike,
    num_train: int,
    num_val: int,
    *,
    size: tuple[int, int] = (320, 320),
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write a synthetic COCO dataset: ``out_dir/images/*.jpg``, ``out_dir/train.json`` and ``out_dir/val.json``.

    ``out_dir`` may hold a set this function wrote before (replaced), but no other dataset (``ConfigError``).

    Args:
        num_train, num_val: images per split (at least 1 each).
        size: ``(H, W)`` of every image, at least 64 each.
        seed: with the split and the image index, seeds each image; the same arguments give the same files.

    Returns:
        ``{"train": path, "val": path, "classes": ["circle", "square", "triangle", "star"]}``; category ids are 1..4.
    """
    if num_train < 1 or num_val < 1:
        raise DataError(f"need at least one train and one val image, got num_train={num_train}, num_val={num_val}")
    if min(size) < 64:
        raise DataError(f"synthetic images must be at least 64x64, got size={tuple(size)}")
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir)
    ancestor = next(p for p in out.absolute().parents if p.exists())
    if not ancestor.is_dir():
        raise ConfigError(f"--out {out}: {ancestor} is a file, not a folder")
    claim_dataset_folder(out, DESCRIPTION, ("train.json", "val.json"))
    paths = {}
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        for split, count in (("train", num_train), ("val", num_val)):
            coco = _write_split(out, split, count, size=(int(size[0]), int(size[1])), seed=seed, progress=progress)
            paths[split] = str(out / f"{split}.json")
            with open(paths[split], "w", encoding="utf-8") as f:
                json.dump(coco, f)
    except OSError as exc:
        raise OutputError(f"can't write --out {out}: {exc.strerror or exc}") from None
    return {"train": paths["train"], "val": paths["val"], "classes": list(CLASSES)}
