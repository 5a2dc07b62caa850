"""click parameter types shared by the commands: every numeric option gets its valid range (click only)."""

from __future__ import annotations

import math

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
