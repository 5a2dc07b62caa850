"""Drawing detections on frames (numpy + OpenCV only, so the runtime and the runner can use it)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class (golden-angle hues)."""
    hue = int((label * 137.508) % 180)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_detections(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    min_score: float = 0.3,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``image_bgr`` with boxes (ndarray[N, 4] xyxy, image pixels) and "name score" captions.

    ``labels`` are 1-based class indices into ``class_names`` (0 is background and never drawn).
    """
    out = image_bgr.copy()
    t = thickness or max(1, round(min(out.shape[:2]) / 400))
    for box, score, label in zip(np.asarray(boxes), np.asarray(scores), np.asarray(labels)):
        if score < min_score or label < 1:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = class_colour(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, t, cv2.LINE_AA)
        name = class_names[int(label) - 1] if int(label) - 1 < len(class_names) else str(int(label))
        caption = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        y_text = max(y1, th + base)
        cv2.rectangle(out, (x1, y_text - th - base), (x1 + tw, y_text), colour, -1)
        cv2.putText(out, caption, (x1, y_text - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out
