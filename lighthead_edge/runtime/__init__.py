"""The torch-free runtime: load a bundle and detect with onnxruntime or OpenVINO.

It imports numpy, OpenCV and, when a :class:`Detector` is built, the one engine it uses; never torch, and nothing of
``modeling``, ``ops`` or ``export``.
"""

from __future__ import annotations

from lighthead_edge.runtime.backends import Hint
from lighthead_edge.runtime.bundle import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    Artifact,
    Backend,
    Bundle,
    BundleError,
    Precision,
    load_bundle,
    sha256_file,
)
from lighthead_edge.runtime.detector import Detections, Detector

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_NAME",
    "Artifact",
    "Backend",
    "Bundle",
    "BundleError",
    "Detections",
    "Detector",
    "Hint",
    "Precision",
    "load_bundle",
    "sha256_file",
]
