"""Image and box transforms shared by training, evaluation and the torch-free runtime.

Only numpy and OpenCV are imported here: ``lighthead_edge.runtime`` reuses this module on devices without torch.

Note:
    Boxes are float ``[N, 4]`` arrays of ``(x1, y1, x2, y2)`` in continuous pixel coordinates: pixel ``i`` covers
    ``[i, i + 1)``, so a box around a whole ``W``-wide image is ``(0, 0, W, H)`` and a horizontal flip maps ``x`` to
    ``W - x``. COCO ``[x, y, w, h]`` boxes are in the same coordinates.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.errors import DataError

# ImageNet mean in BGR, 0..255 (ModelConfig.pixel_mean reversed and rounded): padding with it normalises to ~0,
# so the letterbox border looks like "nothing" to the backbone.
PAD_BGR: tuple[int, int, int] = (104, 116, 124)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 ``[H, W, 3]`` BGR; raise ``DataError`` naming the file if it can't be decoded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found; check the path or the dataset's image root")
    # np.fromfile + imdecode instead of imread: imread returns None silently and can't read non-ASCII paths on Windows.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # imdecode asserts on an empty buffer
    if image is None:
        raise DataError(f"image {path} can't be decoded; it is corrupt or not an image (re-export it as JPEG or PNG)")
    return image


def check_image_file(path: str | Path) -> None:
    """Raise ``DataError`` naming ``path`` unless it is a non-empty file whose header OpenCV recognises as an image
    format it decodes: a cheap check (a stat and a few bytes) before a long run reads it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found; check the path or the dataset's image root")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is empty (0 bytes); re-export it or remove it from the dataset")
    if not cv2.haveImageReader(str(path)):
        raise DataError(f"image {path} is not an image OpenCV can decode (its header is no known format)")


def letterbox_geometry(frame_hw: tuple[int, int], size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """``(scale, (new_h, new_w))`` of :func:`letterbox` for a ``frame_hw`` frame into ``size`` (H, W): the one formula,
    also used by the export graph's in-graph letterbox (:class:`lighthead_edge.export.graph.FrameLetterbox`)."""
    (h, w), (out_h, out_w) = frame_hw, size
    scale = min(out_h / h, out_w / w)
    return scale, (min(out_h, max(1, round(h * scale))), min(out_w, max(1, round(w * scale))))


def letterbox(
    image_bgr: np.ndarray, size: tuple[int, int], *, pad_bgr: tuple[int, int, int] = PAD_BGR
) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio so the image fits in ``size``, at the top-left, and pad bottom/right.

    Args:
        image_bgr (ndarray[h, w, 3] uint8): the original image.
        size: ``(H, W)`` of the model input.
        pad_bgr: colour of the padding; the ImageNet mean by default.

    Returns:
        ``(ndarray[H, W, 3] uint8, scale)`` where ``scale = min(H / h, W / w)``; input-pixel coordinates map back to
        the original image by dividing by ``scale`` (see :func:`scale_boxes`).

    Note:
        The resize is exact bilinear (half-pixel centres) in float, rounded to uint8: what a frame-in graph's
        letterbox computes (``export --frame-size``), so the host path and the graph feed the model the same image.
        cv2's uint8 INTER_LINEAR (11-bit fixed-point weights) is one grey level off on 22-30% of pixels, which moved
        INT8 boxes: host and frame-in INT8 graphs agreed on 4-8% of detections at IoU 0.99 with it, and on all of
        them with this (NEON model, 640x480 and 1280x720 frames). The resize costs 0.5 ms against 0.44 ms at 640x480,
        0.41 against 0.32 ms for 320x320 -> 512x512, 2.2 against 0.44 ms at 1280x720 (quiet 2-vCPU AVX2-only EPYC,
        cv2's threads). The whole letterbox of a 640x480 frame takes 1.2 ms (2-vCPU AVX-512 Xeon).
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise DataError(f"expected a uint8 [H, W, 3] BGR image, got {image_bgr.dtype} {list(image_bgr.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    h, w = image_bgr.shape[:2]
    scale, (new_h, new_w) = letterbox_geometry((h, w), (out_h, out_w))
    if (new_h, new_w) != (h, w):
        resized = cv2.resize(image_bgr.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        image_bgr = cv2.convertScaleAbs(resized)  # round half to even (as np.rint) and saturate: 0..255 already
    # the padding by cv2 (0.03 ms at 512x512): a numpy fill broadcasting 3 values took 2.6 ms, 3x the resize
    pad = tuple(int(c) for c in pad_bgr)
    out = cv2.copyMakeBorder(image_bgr, 0, out_h - new_h, 0, out_w - new_w, cv2.BORDER_CONSTANT, value=pad)
    return out, float(scale)


def to_model_input(image_bgr: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 BGR -> ``[3, H, W]`` float32 RGB in 0..255 (the model normalises internally)."""
    rgb = image_bgr[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def hflip(image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an ``[H, W, C]`` image and its ``[N, 4]`` xyxy boxes left-right (``x' = W - x``)."""
    width = image.shape[1]
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def vflip(image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an ``[H, W, C]`` image and its ``[N, 4]`` xyxy boxes top-bottom (``y' = H - y``)."""
    height = image.shape[0]
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    flipped[:, 1] = height - boxes[:, 3]
    flipped[:, 3] = height - boxes[:, 1]
    return np.ascontiguousarray(image[::-1]), flipped


def rot90(image: np.ndarray, boxes_xyxy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate an ``[H, W, C]`` image and its xyxy boxes by ``k`` quarter turns counter-clockwise.

    One turn maps pixel-edge coordinates ``(x, y)`` of a ``W``-wide image to ``(y, W - x)``.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    for _ in range(k % 4):
        width = image.shape[1]
        image = np.rot90(image)
        boxes = np.stack([boxes[:, 1], width - boxes[:, 2], boxes[:, 3], width - boxes[:, 0]], axis=1)
    return np.ascontiguousarray(image), boxes.astype(np.float32)


def adjust_colour(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """``(image - mean) * contrast + mean * brightness``, clipped to uint8: light and sensor changes between sites."""
    img = image.astype(np.float32)
    mean = img.mean()
    return np.clip((img - mean) * contrast + mean * brightness, 0, 255).astype(np.uint8)


def scale_boxes(boxes: np.ndarray, scale: float, orig_hw: tuple[int, int]) -> np.ndarray:
    """Map ``[N, 4]`` xyxy boxes from letterboxed-input pixels to the original image, clipped to ``(0, 0, w, h)``."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / np.float32(scale)
    h, w = orig_hw
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out
