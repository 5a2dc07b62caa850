"""The tests' shared exported assets (the session fixture ``assets`` in ``tests/conftest.py`` builds them once).

Test files import the type from here (``from exported import ExportedAssets``; ``tests/`` is on ``sys.path`` in
pytest's rootdir import mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = Path(__file__).parent / "export" / "data" / "tiny_synth_128.pt"  # see export/data/make_tiny.py
VAL_SIZE = (120, 160)  # (h, w): not the model's square input, so letterboxing and mapping boxes back are exercised
NUM_VAL = 16


@dataclass(frozen=True)
class ExportedAssets:
    """checkpoint (model.pt), val_json (a synthetic COCO val split) and bundle (exported with ``--val``)."""

    checkpoint: Path
    val_json: Path
    bundle: Path


def build_assets(root: Path, *, threads: int = 2) -> ExportedAssets:
    """The val split and the bundle of :data:`CHECKPOINT`, exported from the loaded model with ``--val``."""
    from lighthead_edge.data.synth import generate_dataset
    from lighthead_edge.export.bundle import ExportSettings, export_bundle
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    data = generate_dataset(root / "data", 1, NUM_VAL, size=VAL_SIZE, seed=0, progress=False)
    model, class_names, _ = load_checkpoint(CHECKPOINT)
    settings = ExportSettings(val_json=str(data["val"]), latency_runs=2, threads=threads)
    bundle = export_bundle(model, class_names, root / "bundle", settings, source=CHECKPOINT, log=lambda message: None)
    return ExportedAssets(CHECKPOINT, Path(data["val"]), bundle)
