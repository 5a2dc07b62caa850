"""``model.pt``: the model config, class names and state dict, the training settings it was trained with (plus
optional resumable training state), loadable with ``torch.load(weights_only=True)``. Written atomically: a temporary
file in the same directory, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lighthead_edge.config import ModelConfig
from lighthead_edge.errors import CheckpointError, ConfigError, LightheadError, OutputError
from lighthead_edge.modeling.detector import LightHeadRCNN, build_detector
from lighthead_edge.modeling.pruned import conform_to_state_dict, is_pruned

FORMAT = "lighthead-edge/checkpoint/1"


def save_checkpoint(
    path: str | Path,
    model: LightHeadRCNN,
    class_names: list[str],
    *,
    meta: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` atomically. ``meta`` holds plain values (metrics, data paths); ``train`` the effective training
    settings and command line (``train.training_record``; None: not trained here); ``train_state`` optimizer,
    scheduler and epoch for ``--resume``."""
    path = Path(path)
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a {model.config.num_classes}-class model")
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "classes": list(class_names),
        "state_dict": model.state_dict(),
        "meta": meta or {},
        "train": train,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, path)
    return path


HALF_MIN_ELEMENTS = 1024  # weights at least this big are stored in float16; BN statistics and biases stay float32


def save_compact(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write ``src`` as a checkpoint to ship: no resumable training state, and every floating-point tensor of at least
    ``HALF_MIN_ELEMENTS`` elements (conv and fc weights) stored in float16, which halves the file.
    ``load_checkpoint`` loads it back into a float32 model (``load_state_dict`` casts), so the model computes in
    float32 as before, from weights rounded to float16 (relative error <= 2**-11). Small tensors (BN running
    statistics, whose variances can be below float16's normal range, and biases) stay float32. Returns the stored
    payload's ``meta["storage"]`` record."""
    payload = read_checkpoint(src)
    state = payload["state_dict"]
    halved = [k for k, v in state.items() if v.is_floating_point() and v.numel() >= HALF_MIN_ELEMENTS]
    compact = {k: (v.half() if k in halved else v) for k, v in state.items()}
    storage = {"float16": len(halved), "float32": len(state) - len(halved), "source": Path(src).name,
               "note": f"floating-point tensors of >= {HALF_MIN_ELEMENTS} elements stored as float16; "
                       "loaded as float32"}  # fmt: skip
    out = {k: v for k, v in payload.items() if k != "train_state"}
    out["state_dict"] = compact
    out["meta"] = {**(payload.get("meta") or {}), "storage": storage}
    atomic_torch_save(out, Path(dst))
    return storage


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:
        return False


def check_output(
    path: str | Path, inputs: Mapping[str, str | Path | None], option: str = "--out", *, devices: bool = False
) -> None:
    """Before any work: ``path`` (a checkpoint or report to write) is not a folder, has a writable folder above it,
    and is none of ``inputs`` (``{"--data": path, ...}``: an input is never an output). Else a one-line
    ``ConfigError``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give the path of the file to write")
    if not devices and path.exists() and not path.is_file():  # a device or FIFO: a rename would replace it (as root)
        raise ConfigError(f"{option} {path} is not a regular file (a device or a pipe); give the path of a file")
    for name, given in inputs.items():
        if given is not None and _same_file(path, Path(given)):
            raise ConfigError(f"{option} {path} is also {name}; an input is never an output: write it elsewhere")
    ancestor = next(p for p in path.absolute().parents if p.exists())
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path}: permission denied or a read-only file system; write it elsewhere")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then a rename: ``path`` is the old file or the new one. A
    failed write (a full disk) is an ``OutputError`` naming ``path``, with nothing half-written left."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:  # through Python's file: ENOSPC comes back as OSError, not a C++ enforce
            torch.save(obj, f)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__context__  # torch's writer re-raises a failed write
        if not isinstance(cause, OSError):
            raise
        raise OutputError(f"can't write {path}: {cause.strerror or cause}") from None
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload, validated; a one-line ``CheckpointError`` for anything that isn't our checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickle junk, text file: all mean "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable lighthead-edge checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lighthead-edge checkpoint (expected format {FORMAT!r})")
    for key in ("config", "classes", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} is missing {key!r}; it was not written by lighthead-edge")
    _check_parts(path, payload)
    return payload


def _check_parts(path: Path, payload: dict[str, Any]) -> None:
    """The parts' types: what every reader of a payload may take for granted (one-line ``CheckpointError``)."""
    damaged = f"{path} is damaged:"
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{damaged} its 'config' is a {type(payload['config']).__name__}, not a dict")
    classes = payload["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise CheckpointError(f"{damaged} its 'classes' must be a list of non-empty names, got {classes!r}"[:300])
    state = payload["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{damaged} its 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{damaged} its state_dict entry {bad!r} is a {type(state[bad]).__name__}, not a tensor")
    for key in ("meta", "train"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise CheckpointError(f"{damaged} its {key!r} is a {type(payload[key]).__name__}, not a dict")
    val = (payload.get("meta") or {}).get("val")
    if val is not None and not (isinstance(val, dict) and all(isinstance(v, (int, float)) for v in val.values())):
        raise CheckpointError(f"{damaged} its meta 'val' must map metric names to numbers, got {val!r}"[:300])


def load_checkpoint(path: str | Path) -> tuple[LightHeadRCNN, list[str], dict[str, Any]]:
    """Rebuild the model of a checkpoint -> (model in eval mode, class names, payload)."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["config"])
        model = build_detector(config)
    except (LightheadError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from None
    if len(payload["classes"]) != config.num_classes:
        raise CheckpointError(f"{path} is damaged: {len(payload['classes'])} class names for a "
                              f"{config.num_classes}-class model")  # fmt: skip
    if is_pruned(payload):  # pruned widths live only in the state dict; rebuild those layers to fit it
        conform_to_state_dict(model, payload["state_dict"])
    own, given = model.state_dict(), payload["state_dict"]
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    mismatched = [k for k in own if k in given and tuple(own[k].shape) != tuple(given[k].shape)]
    if missing or unexpected or mismatched:
        first = (missing + unexpected + mismatched)[0]
        raise CheckpointError(
            f"{path} does not match the {config.backbone} architecture it declares ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped tensors; first: {first})"
        )
    bad = next((k for k, v in given.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(f"{path} has non-finite weights in {bad} (NaN or inf); the training that wrote it "
                              "diverged: use an earlier checkpoint or retrain with a lower --lr")  # fmt: skip
    model.load_state_dict(given)
    model.eval()
    return model, list(payload["classes"]), payload
