"""click parameter types shared by the commands: every numeric option gets its valid range (click only)."""

from __future__ import annotations

import math
import re

import click


class Finite(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` and ``inf`` (a range check lets ``nan`` through)."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


COUNT = click.IntRange(min=1)  # at least one: images, epochs, iterations, runs, batches
THREADS = click.IntRange(1, 1024)
SEED = click.IntRange(0, 2**32 - 1)
POSITIVE = Finite(0.0, min_open=True)  # a rate, a time budget
FRACTION = Finite(0.0, 1.0, max_open=True)  # [0, 1): a pruning ratio


MAX_FRAME_SIDE = 16384


class FrameSize(click.ParamType):
    """``WxH`` (as cameras and ``run --stdin-raw`` name sizes), each side 1..16384 -> ``(height, width)``."""

    name = "WxH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", str(value), flags=re.ASCII)
        if match is None:
            self.fail(f"wants WIDTHxHEIGHT, e.g. 1280x720, got {value!r}", param, ctx)
        width, height = int(match[1]), int(match[2])
        if not (1 <= width <= MAX_FRAME_SIDE and 1 <= height <= MAX_FRAME_SIDE):
            self.fail(f"{width}x{height} is out of range (sides 1..{MAX_FRAME_SIDE})", param, ctx)
        return height, width


FRAME_SIZE = FrameSize()
