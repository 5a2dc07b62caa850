"""A real bundle whose ``manifest.json`` is damaged: ``eval BUNDLE``, ``run --model BUNDLE`` and ``bench BUNDLE``
answer exit 5 in one line before any work, and touch no file (bench writes no report into it).

Damage: invalid JSON, not an object, a key dropped, a value of the wrong type, class names edited, the input shape
edited, artifact or file paths pointing outside the bundle, the format changed. Each is tried with the manifest's
digest left as it was (an edit by hand) and recomputed (a tool that rewrote it): the loader must catch what the
digest can't, by checking the manifest's content against the graph.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile import BUNDLE, BundleWorld, World, check_refused, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

from lighthead_edge.runtime.bundle import DIGEST_KEY, READABLE_FORMATS, manifest_digest

REQUIRED = ("format", "class_names", "input", "preprocessing", "artifacts", "files")
WRONG = st.one_of(st.none(), st.integers(-2, 2), st.text(max_size=4), st.booleans(), st.just([]), st.just({}),
                  st.lists(st.integers(), min_size=1, max_size=3))  # fmt: skip


def _pick(draw: st.DataObject, items: list) -> Any:
    return items[draw.draw(st.integers(0, len(items) - 1))]


def drop_key(draw: st.DataObject, m: dict) -> dict:
    where = draw.draw(st.sampled_from(["top", "input", "artifact", "file record", "letterbox"]))
    if where == "top":
        del m[draw.draw(st.sampled_from(REQUIRED))]
    elif where == "input":
        del m["input"]["shape"]
    elif where == "artifact":
        del _pick(draw, m["artifacts"])[draw.draw(st.sampled_from(["backend", "precision", "path", "files"]))]
    elif where == "file record":
        del m["files"][_pick(draw, sorted(m["files"]))][draw.draw(st.sampled_from(["sha256", "bytes"]))]
    else:
        del m["preprocessing"]["letterbox"]["pad_bgr"]
    return m


def wrong_type(draw: st.DataObject, m: dict) -> dict:
    where = draw.draw(st.sampled_from(["class_names", "input", "input.shape", "artifacts", "artifact", "files",
                                       "file record", "pad_bgr", "artifact.files"]))  # fmt: skip
    value = draw.draw(WRONG)
    if where in ("class_names", "input", "artifacts", "files"):
        m[where] = value if value != m[where] else None
    elif where == "input.shape":
        m["input"]["shape"] = value
    elif where == "artifact":
        m["artifacts"][draw.draw(st.integers(0, len(m["artifacts"]) - 1))] = value
    elif where == "artifact.files":
        _pick(draw, m["artifacts"])["files"] = draw.draw(st.one_of(st.none(), st.integers(), st.just("model.onnx")))
    elif where == "file record":
        m["files"][_pick(draw, sorted(m["files"]))] = value
    else:
        m["preprocessing"]["letterbox"]["pad_bgr"] = value
    return m


def class_names(draw: st.DataObject, m: dict) -> dict:
    """Class names whose number or type is wrong (a rename alone is :func:`test_relabelled_manifest_is_refused`)."""
    names = m["class_names"]
    how = draw.draw(st.sampled_from(["drop", "add", "not a string", "empty"]))
    if how == "drop":
        names.pop(draw.draw(st.integers(0, len(names) - 1)))
    elif how == "add":
        names.insert(draw.draw(st.integers(0, len(names))), draw.draw(st.text(min_size=1, max_size=6)))
    elif how == "not a string":
        names[draw.draw(st.integers(0, len(names) - 1))] = draw.draw(st.one_of(st.none(), st.integers(), st.just([])))
    else:
        m["class_names"] = []
    return m


def input_shape(draw: st.DataObject, m: dict) -> dict:
    shape = m["input"]["shape"]
    m["input"]["shape"] = draw.draw(st.one_of(
        st.lists(st.integers(-2, 4096), min_size=4, max_size=4),
        st.lists(st.integers(1, 512), max_size=6).filter(lambda s: len(s) != 4),
        st.sampled_from([[1, 64, 64, 3], [1, 128, 128, 1], [2, 128, 128, 3], [1, 3, 128, 128], [1, 1e9, 128, 3],
                         [1, 128.5, 128, 3], [1, "128", 128, 3]]),
    ).filter(lambda s: s != shape))  # fmt: skip
    return m


def outside(draw: st.DataObject, m: dict) -> dict:
    """An artifact (or a checksummed file) named by a path that leaves the bundle: ``..``, absolute, or into a
    sibling copy of the same files (the shared assets' bundle: valid files, outside)."""
    artifact = _pick(draw, m["artifacts"])
    old = artifact["path"]
    new = draw.draw(st.sampled_from([f"../{old}", f"/{old}", f"../../../../../../../../tmp/{old}", "/etc/passwd",
                                     "/dev/zero", "..", "", f"sub/../../{old}"]))  # fmt: skip
    if draw.draw(st.booleans()):  # the file records follow the path, so that only the path itself is wrong
        artifact["files"] = [new if f == old else f for f in artifact["files"]]
        m["files"][new] = m["files"].pop(old)
    artifact["path"] = new
    return m


def format_changed(draw: st.DataObject, m: dict) -> dict:
    m["format"] = draw.draw(st.one_of(
        st.sampled_from(["lighthead-edge/bundle/4", "lighthead-edge/bundle/99", "lighthead-edge/bundle/", "bundle/3",
                         "", "LIGHTHEAD-EDGE/BUNDLE/3"]),
        st.text(max_size=10), st.none(), st.integers(), st.just(["lighthead-edge/bundle/3"]),
    ).filter(lambda f: f not in READABLE_FORMATS))  # fmt: skip
    return m


EDITS: dict[str, Callable[[st.DataObject, dict], dict]] = {
    f.__name__: f for f in (drop_key, wrong_type, class_names, input_shape, outside, format_changed)
}


def damaged_bundle(draw: st.DataObject, bw: BundleWorld, ex: Path, edit: str) -> Path:
    """A copy of the bundle in ``ex`` with its manifest damaged by ``edit``; the digest is kept or recomputed."""
    bundle = Path(shutil.copytree(bw.bundle, ex / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    if edit == "invalid json":
        text = json.dumps(manifest, indent=2).encode()
        raw = draw.draw(st.one_of(st.just(b""), st.integers(1, len(text) - 1).map(lambda n: text[:n]),
                                  st.binary(min_size=1, max_size=40), st.just(b"\xff\xfe" + text)))  # fmt: skip
    elif edit == "not an object":
        raw = json.dumps(draw.draw(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.none(),
                                             st.integers(), st.floats(allow_nan=False)))).encode()  # fmt: skip
    else:
        manifest = EDITS[edit](draw, manifest)
        if draw.draw(st.booleans(), label="digest recomputed"):
            manifest[DIGEST_KEY] = manifest_digest(manifest)
        raw = json.dumps(manifest, indent=2).encode()
    (bundle / "manifest.json").write_bytes(raw)
    return bundle


def bundle_command(command: str, bundle: Path, world: World, bw: BundleWorld) -> tuple[list, bool]:
    """The arguments of ``command`` on ``bundle``, and whether its error may follow a ``running ...`` line."""
    if command == "eval":
        return ["eval", bundle, "--data", world.val_json, "--threads", "1"], False
    if command == "run":
        return ["run", "--model", bundle, "--images", bw.frames, "--max-frames", "1", "--threads", "1",
                "--stats-every", "0"], True  # fmt: skip
    return ["bench", bundle, "--runs", "1", "--threads", "1"], False


COMMANDS = ("eval", "run", "bench")


@pytest.mark.parametrize("edit", ["invalid json", "not an object", *sorted(EDITS)])
@pytest.mark.parametrize("command", COMMANDS)
@examples(3)
@given(draw=st.data())
def test_damaged_manifest_is_refused(
    cli, world: World, bundle_world: BundleWorld, tmp_path: Path, command: str, edit: str, draw: st.DataObject
) -> None:
    ex = scratch(tmp_path)
    bundle = damaged_bundle(draw, bundle_world, ex, edit)
    args, running = bundle_command(command, bundle, world, bundle_world)
    check_refused(cli, args, [*bundle_world.roots, tmp_path], codes=[BUNDLE], running_line=running,
                  also=lambda: [f"wrote {p.name} into the bundle" for p in bundle.iterdir() if p.name.startswith(
                      "report")])  # fmt: skip
    discard(ex)


@pytest.mark.parametrize("command", COMMANDS)
@examples(3)
@given(draw=st.data())
def test_relabelled_manifest_is_refused(
    cli, world: World, bundle_world: BundleWorld, tmp_path: Path, command: str, draw: st.DataObject
) -> None:
    """Class names renamed or reordered, the digest recomputed (or a format-2 manifest, which has none): the names
    inside the artifacts (ONNX metadata, IR rt_info) disagree, so the bundle is refused instead of relabelling."""
    ex = scratch(tmp_path)
    bundle = Path(shutil.copytree(bundle_world.bundle, ex / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = manifest["class_names"]
    new = draw.draw(st.one_of(
        st.permutations(names), st.lists(st.text(min_size=1, max_size=8), min_size=len(names), max_size=len(names)),
        st.just(["tree", "Car", "triangle", "star"]),
    ).filter(lambda n: list(n) != names))  # fmt: skip
    manifest["class_names"] = list(new)
    if draw.draw(st.booleans(), label="as format 2 (no digest)"):
        manifest["format"] = "lighthead-edge/bundle/2"
        manifest.pop(DIGEST_KEY)
    else:
        manifest[DIGEST_KEY] = manifest_digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    args, running = bundle_command(command, bundle, world, bundle_world)
    check_refused(cli, args, [*bundle_world.roots, tmp_path], codes=[BUNDLE], running_line=running)
    discard(ex)
