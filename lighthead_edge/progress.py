"""Progress display for long work (training, evaluation, calibration, export): tqdm on stderr when enabled."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], enabled: bool = True, desc: str = "", total: int | None = None) -> Iterable[T]:
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # the runtime-only install has no tqdm; progress is then silent
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
