"""Fixtures of the property-based CLI suite: per test module, a tiny synthetic COCO set (2 train / 2 val images at
64x64, the tiny checkpoint's four classes), a private copy of the tiny checkpoint, and (for the bundle properties) a
private copy of the shared bundle plus a folder of one frame. Private copies: a command that fails to protect its
inputs must not break the other tests (the snapshot of the test reports it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from exported import CHECKPOINT, ExportedAssets  # tests/ is on sys.path (pytest rootdir mode)
from hostile import BundleWorld, World  # tests/robustness is on sys.path too


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from lighthead_edge.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("robust")
    generate_dataset(root / "data", 2, 2, size=(64, 64), seed=1, progress=False)
    (root / "models").mkdir()
    return World(root, root / "data", Path(shutil.copy2(CHECKPOINT, root / "models" / "model.pt")))


@pytest.fixture(scope="module")
def bundle_world(world: World, assets: ExportedAssets) -> BundleWorld:
    bundle = Path(shutil.copytree(assets.bundle, world.root / "bundle"))
    frames = world.root / "frames"
    frames.mkdir()
    first = sorted((world.data / "images").glob("val_*"))[0]
    shutil.copy2(first, frames / first.name)
    return BundleWorld(bundle, frames, [*world.roots, assets.bundle, assets.val_json.parent])


@pytest.fixture(autouse=True, scope="module")
def _torch_threads():
    """Commands run in-process with ``--threads 1`` set torch's thread count for the process: restore it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
