"""The exception hierarchy of lighthead-edge.

Every error a user can cause (bad file, bad data, bad settings) is raised as a ``LightheadError`` subclass whose
message says what is wrong and what to do. The CLI turns it into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class LightheadError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(LightheadError):
    """Invalid settings or an unknown name (backbone, optimizer, ...)."""

    exit_code = 2


class DataError(LightheadError):
    """A dataset, annotation file or image that can't be used."""

    exit_code = 3


class CheckpointError(LightheadError):
    """A checkpoint that is missing, corrupted, or of another architecture."""

    exit_code = 4


class ExportError(LightheadError):
    """An export or bundle that can't be produced or verified."""

    exit_code = 5


class OutputError(LightheadError):
    """An output that can't be written: no such folder, no permission, a full disk, a video codec OpenCV lacks."""

    exit_code = 7
