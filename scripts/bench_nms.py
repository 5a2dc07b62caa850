#!/usr/bin/env python
"""Time the pure-torch NMS (``lighthead_edge.ops.nms``) against the implementation it replaced, on a model's own RPN
proposals, and the training step and inference that call it.

    python scripts/bench_nms.py [--checkpoint models/neon-mbv2-s.pt] [--images 4] [--size 512] [--runs 5]
                                [--threads 2] [--steps 3]

The proposals are the checkpoint's RPN's on synthetic scenes (``data.synth.render_scene``, nothing downloaded), at
its training settings (``rpn_pre_nms_top_n_train`` before NMS, ``rpn_post_nms_top_n_train`` kept) and at its test
settings. The baseline is the former ``nms``: one (N x N) IoU matrix and whole-matrix fixed-point rounds, the result
then cut to the kept count. The table gives each one's median milliseconds (interleaved, same run), their ratio, and
whether the kept indices are identical on every image; then the same for a training step (forward and backward,
batch ``--images``) and an eval forward, with each NMS swapped in.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from lighthead_edge.data.synth import render_scene
from lighthead_edge.measure import interleaved_timings
from lighthead_edge.modeling.checkpoint import load_checkpoint
from lighthead_edge.ops.boxes import box_iou
from lighthead_edge.ops.nms import nms as block_nms
from lighthead_edge.runtime.isa import cpu_isa_flags

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "neon-mbv2-s.pt"
# the modules whose ``nms`` name the model calls (rpn: proposals; the detector's batched_nms calls ops.nms's own)
_NMS_USERS = ("lighthead_edge.modeling.rpn", "lighthead_edge.ops.nms")


def matrix_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """The implementation before block-wise NMS (commit 098aed5): the whole (N x N) suppression matrix, iterated to
    its fixed point, then cut to ``max_keep``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    suppresses = torch.triu(box_iou(b, b) > iou_threshold, diagonal=1)
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep][:max_keep]


class swapped_nms:  # noqa: N801 - used as a context manager
    """Within ``with swapped_nms(fn):`` the model's NMS calls go to ``fn``."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        self.fn = fn
        self.saved: list[tuple[object, Callable[..., Tensor]]] = []

    def __enter__(self) -> None:
        for name in _NMS_USERS:
            module = importlib.import_module(name)
            self.saved.append((module, module.nms))
            module.nms = self.fn

    def __exit__(self, *exc: object) -> None:
        for module, fn in self.saved:
            module.nms = fn


def proposals_of(model, images: Tensor, training: bool) -> list[tuple[Tensor, Tensor, float, int]]:
    """(boxes, scores, iou threshold, kept count) of every NMS call the RPN makes on ``images``."""
    calls = []

    def record(boxes, scores, iou_threshold, max_keep=None):
        calls.append((boxes.clone(), scores.clone(), iou_threshold, max_keep))
        return block_nms(boxes, scores, iou_threshold, max_keep)

    model.train(training)
    with torch.no_grad(), swapped_nms(record):
        model.rpn(model.backbone(model.normalize(images)), tuple(images.shape[-2:]))
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--images", type=int, default=4, help="synthetic scenes (the training step's batch)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5, help="timed calls of each variant")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of each variant (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, classes, _ = load_checkpoint(args.checkpoint)
    scenes = [render_scene(i, split="val", size=(args.size, args.size)) for i in range(args.images)]
    images = torch.stack([torch.from_numpy(s.image[:, :, ::-1].copy()).permute(2, 0, 1).float() for s in scenes])
    targets = [{"boxes": torch.from_numpy(s.boxes).float(), "labels": torch.ones(len(s.boxes), dtype=torch.int64)}
               for s in scenes]  # fmt: skip - every shape counts as the checkpoint's first class
    variants = {"baseline (N x N matrix)": matrix_nms, "block-wise": block_nms}
    isa = " + ".join(cpu_isa_flags()) or "unknown"
    print(f"host ISA: {isa}, {args.threads} threads; {args.checkpoint.name}, {args.images} synthetic "
          f"{args.size}x{args.size} scenes")  # fmt: skip
    print("| what | candidates | kept | baseline ms | block-wise ms | block / baseline | identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for training, label in ((True, "RPN NMS, training settings"), (False, "RPN NMS, test settings")):
        calls = proposals_of(model, images, training)
        same = sum(torch.equal(matrix_nms(*c), block_nms(*c)) for c in calls)
        fns = {name: (lambda fn=fn, calls=calls: [fn(*c) for c in calls]) for name, fn in variants.items()}
        t = interleaved_timings(fns, args.runs, warmup=1, rounds=args.runs)
        base, block = (t[name]["p50"] / len(calls) for name in variants)
        kept = sum(len(block_nms(*c)) for c in calls) / len(calls)
        sizes = sum(len(c[0]) for c in calls) / len(calls)
        print(f"| {label} (per image) | {sizes:.0f} | {kept:.0f} | {base:.1f} | {block:.1f} | {block / base:.3f} "
              f"| {same}/{len(calls)} |")  # fmt: skip

    def step() -> None:
        model.train()
        losses = model(images, targets)
        sum(losses.values()).backward()
        model.zero_grad(set_to_none=True)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(images)

    passes = (("training step (forward + backward)", step, args.steps), ("eval forward", infer, args.runs))
    for label, fn, runs in passes:
        if runs <= 0:
            continue
        timed = {name: (lambda nms_fn=nms_fn, fn=fn: _with(nms_fn, fn)) for name, nms_fn in variants.items()}
        t = interleaved_timings(timed, runs, warmup=1, rounds=runs)
        base, block = (t[name]["p50"] for name in variants)
        print(f"| {label}, batch {args.images} | | | {base:.0f} | {block:.0f} | {block / base:.3f} | |")
    return 0


def _with(nms_fn: Callable[..., Tensor], fn: Callable[[], None]) -> None:
    with swapped_nms(nms_fn):
        fn()


if __name__ == "__main__":
    raise SystemExit(main())
