#!/usr/bin/env python
"""Parity of a bundle with its eager torch model on a COCO set, per backend and precision, side by side.

    python scripts/check_parity.py model.pt bundle/ val.json

For each artifact of the bundle: matched detections, how many of them are exact (IoU >= 0.99, scores within 1e-3),
min IoU and max score difference against eager torch, the
largest score among detections present on one side only, and COCO AP/AP50 next to torch's. Targets (issue 4): FP32
IoU >= 0.99, scores within 1e-3, AP within 0.002; FP16 AP within 0.005.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lighthead_edge.evaluate import evaluate_model
from lighthead_edge.export import parity
from lighthead_edge.measure import coco_metrics
from lighthead_edge.modeling.checkpoint import load_checkpoint
from lighthead_edge.runtime import Detector
from lighthead_edge.runtime.bundle import load_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model, _, _ = load_checkpoint(args.model)
    expected = parity.eager_detections(model, args.data)
    torch_metrics = evaluate_model(model, args.data, progress=False)
    bundle = load_bundle(args.bundle)
    header = ("artifact", "matched", "exact", "min IoU", "max |ds|", "1-sided", "AP", "dAP", "AP50")
    print("{:<18} {:>7} {:>6} {:>8} {:>9} {:>8} {:>7} {:>8} {:>6}".format(*header))
    print(f"{'torch/fp32':<18} {sum(len(e['scores']) for e in expected):>7} {'':>6} {'':>8} {'':>9} {'':>8} "
          f"{torch_metrics['AP']:>7.4f} {'':>8} {torch_metrics['AP50']:>6.3f}")  # fmt: skip
    for artifact in bundle.artifacts:
        detector = Detector(bundle, artifact.backend, threads=args.threads, precision=artifact.precision)
        result = parity.compare(detector, expected, args.data)
        metrics = coco_metrics(detector, args.data)
        one_sided = max(result.unmatched_scores, default=0.0)
        print(f"{artifact.key:<18} {result.matched:>7} {result.exact:>6} {result.min_iou:>8.5f} "
              f"{result.max_score_diff:>9.2e} {one_sided:>8.3f} {metrics['AP']:>7.4f} "
              f"{metrics['AP'] - torch_metrics['AP']:>+8.4f} {metrics['AP50']:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
