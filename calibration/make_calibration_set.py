"""Build an INT8 calibration set the way ``lighthead-edge quantize`` does, and save it for inspection or reuse.

    .venv/bin/python calibration/make_calibration_set.py frames/ --bundle bundle/ --size 300 --out calib.npz
    .venv/bin/python calibration/make_calibration_set.py clip.mp4 --input-size 512 --selection diverse --out calib.npz
    .venv/bin/python calibration/make_calibration_set.py val.json --bundle bundle/ --previews previews/

The inputs are letterboxed exactly as the runtime's ``Detector.preprocess`` does (size and pad colour from the
bundle's manifest, or ``--input-size`` with the default pad), so they are what the deployed graph is fed. The
``.npz`` holds ``inputs`` (uint8 [N, H, W, 3]) and ``names``; ``--previews`` writes each input as a PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.compress.calibration import (
    DEFAULT_SIZE,
    CalibrationSet,
    Selection,
    build_calibration_set,
    calibration_set_for_bundle,
)
from lighthead_edge.errors import LightheadError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="image folder, COCO json or video file")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--bundle", help="a bundle folder: input size and pad colour from its manifest")
    size.add_argument("--input-size", type=int, help="square model input side, when there is no bundle yet")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="images to choose [300]")
    parser.add_argument("--selection", choices=[s.value for s in Selection], default="uniform")
    parser.add_argument("--out", help="write inputs + names to this .npz")
    parser.add_argument("--previews", help="write every input as a PNG into this folder")
    return parser.parse_args(argv)


def _save(calib: CalibrationSet, out: str | None, previews: str | None) -> None:
    if out:
        np.savez_compressed(out, inputs=np.concatenate(calib.inputs), names=np.array(calib.names))
        print(f"wrote {out}")
    if previews:
        folder = Path(previews)
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(calib.inputs):
            cv2.imwrite(str(folder / f"{i:04d}.png"), image[0])
        print(f"wrote {len(calib)} previews to {folder}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        if args.bundle:
            calib = calibration_set_for_bundle(args.source, args.bundle, size=args.size, selection=args.selection)
        else:
            side = (args.input_size, args.input_size)
            calib = build_calibration_set(args.source, input_size=side, size=args.size, selection=args.selection)
    except LightheadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(calib.summary())
    if calib.skipped:
        print("skipped: " + ", ".join(calib.skipped[:10]) + (" ..." if len(calib.skipped) > 10 else ""))
    _save(calib, args.out, args.previews)
    return 0


if __name__ == "__main__":
    sys.exit(main())
