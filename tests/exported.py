"""Test support for exported models: a small validation set and a bundle of a given checkpoint, built once.

The export and runtime test folders both need the same bundle; each has its own conftest, so the bundle is memoised
on disk (in pytest's session base temp folder) rather than in a fixture only one folder can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lighthead_edge.export.bundle import ExportSettings, export_bundle

VAL_SIZE = (120, 160)  # (h, w): not the model's square input, so letterboxing and mapping boxes back are exercised
NUM_VAL = 16


@dataclass(frozen=True)
class ExportedAssets:
    """checkpoint (model.pt), val_json (a synthetic COCO val split) and bundle (exported with ``--val``)."""

    checkpoint: Path
    val_json: Path
    bundle: Path


def exported_assets(root: Path, checkpoint: Path, *, threads: int = 2) -> ExportedAssets:
    """Make (or reuse, when ``root`` already holds them) the val split and the bundle of ``checkpoint``."""
    from lighthead_edge.data.synth import generate_dataset

    root.mkdir(parents=True, exist_ok=True)
    val_json = root / "data" / "val.json"
    if not val_json.is_file():
        generate_dataset(root / "data", 1, NUM_VAL, size=VAL_SIZE, seed=0, progress=False)
    bundle = root / "bundle"
    if not (bundle / "manifest.json").is_file():
        settings = ExportSettings(val_json=str(val_json), latency_runs=2, threads=threads)
        export_bundle(checkpoint, bundle, settings=settings, log=lambda message: None)
    return ExportedAssets(checkpoint, val_json, bundle)
