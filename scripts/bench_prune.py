"""Pruning benchmark: MACs / params per stage and FP32 torch latency before and after pruning, and optionally the AP
of a trained checkpoint before and after fine-tuning.

    .venv/bin/python scripts/bench_prune.py                       # default mobilenet_v2-S at 512, ratio 0.5
    .venv/bin/python scripts/bench_prune.py --ratios 0.3,0.5 --threads 2 --runs 20
    .venv/bin/python scripts/bench_prune.py --checkpoint model.pt --data train.json --val val.json --iters 300

Latency is eager torch FP32, per stage and end to end, on random weights (pruning changes shapes, not the cost of
a weight value). The R-CNN head is timed at a fixed RoI count, so proposal counts don't blur the comparison; the
end-to-end figure uses whatever the random RPN proposes. Unpruned and pruned runs are timed interleaved
(:func:`lighthead_edge.measure.interleaved_timings`), so machine load drifts hit both alike; medians are printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from lighthead_edge.compress import PruneSettings, prune_checkpoint, prune_model
from lighthead_edge.config import ModelConfig, TrainConfig
from lighthead_edge.measure import interleaved_timings
from lighthead_edge.modeling.detector import LightHeadRCNN, build_detector


def _stage_calls(model: LightHeadRCNN, num_rois: int) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per stage, on fixed inputs at the model's input size."""
    cfg = model.config
    image = torch.rand(1, 3, *cfg.input_size, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        features = model.backbone(model.normalize(image))
        thin = model.thin_head(features)
    g = torch.Generator().manual_seed(1)
    h, w = cfg.input_size
    xy = torch.rand(num_rois, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = torch.rand(num_rois, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 16
    rois = torch.cat([torch.zeros(num_rois, 1), xy, xy + wh], dim=1)
    return {
        "backbone": lambda: model.backbone(model.normalize(image)),
        "rpn": lambda: model.rpn.head(features),
        "thin_map": lambda: model.thin_head(features),
        f"rcnn_head ({num_rois} RoIs)": lambda: model.roi_heads(thin, rois),
        "detector (end to end)": lambda: model(image),
    }


@torch.no_grad()
def time_models(models: dict[str, LightHeadRCNN], runs: int, num_rois: int) -> dict[str, dict[str, float]]:
    """-> {model name: {stage: median ms}}, every model's stages timed in one interleaved schedule."""
    calls = {f"{name}\t{stage}": fn for name, model in models.items()
             for stage, fn in _stage_calls(model.eval(), num_rois).items()}  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for key, stats in interleaved_timings(calls, runs, warmup=2, rounds=4).items():
        name, stage = key.split("\t", 1)
        out.setdefault(name, {})[stage] = stats["p50"]
    return out


def bench_latency(ratios: list[float], runs: int, num_rois: int, importance: str) -> None:
    torch.manual_seed(0)
    model = build_detector(ModelConfig()).eval()
    c = model.config
    print(f"model: {c.backbone}-{c.head_size}, input {c.input_size[0]}x{c.input_size[1]}, random weights, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")  # fmt: skip
    models = {"unpruned": model}
    for ratio in ratios:
        pruned, report = prune_model(model, ratio=ratio, importance=importance)
        print(f"\n== ratio {ratio} ==\n{report.format()}")
        models[f"ratio {ratio}"] = pruned
    medians = time_models(models, runs, num_rois)
    names = list(medians)
    print(f"\nFP32 eager latency, median of {runs} runs (ms; ratio to unpruned):")
    print(f"{'stage':<24}" + "".join(f"{n:>22}" for n in names))
    for stage in medians["unpruned"]:
        base = medians["unpruned"][stage]
        cells = [f"{medians[n][stage]:>10.2f} ({medians[n][stage] / base:>5.2f}x)" for n in names]
        print(f"{stage:<24}" + "".join(f"{cell:>22}" for cell in cells))


def bench_accuracy(args: argparse.Namespace) -> None:
    settings = PruneSettings(ratio=args.ratios[-1], importance=args.importance, distill=args.distill)
    cfg = TrainConfig(iters=args.iters, lr=args.lr, warmup_iters=min(50, args.iters // 5), batch_size=4,
                      threads=args.threads)  # fmt: skip
    run = prune_checkpoint(args.checkpoint, args.out, train_json=args.data, val_json=args.val, settings=settings,
                           train_config=cfg, progress_bar=False)  # fmt: skip
    print(f"\n== {args.checkpoint} at ratio {settings.ratio}, {args.iters} fine-tuning iterations"
          f"{' with distillation' if args.distill else ''} ==\n{run.report.format()}\n{run.format_ap()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", default="0.5", help="Comma-separated pruning ratios.")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2", "bn"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rois", type=int, default=300, help="RoIs for the R-CNN head timing.")
    parser.add_argument("--checkpoint", help="A trained model.pt: also measure AP before/after fine-tuning.")
    parser.add_argument("--data", help="Training COCO json (with --checkpoint).")
    parser.add_argument("--val", help="Validation COCO json (with --checkpoint).")
    parser.add_argument("--iters", type=int, default=300, help="Fine-tuning iterations (with --checkpoint).")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--distill", action="store_true")
    parser.add_argument("--out", default="runs/bench_prune/pruned.pt")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    args.ratios = [float(r) for r in args.ratios.split(",")]
    torch.set_num_threads(args.threads)
    if not args.skip_latency:
        bench_latency(args.ratios, args.runs, args.rois, args.importance)
    if args.checkpoint:
        if not (args.data and args.val):
            parser.error("--checkpoint needs --data and --val")
        bench_accuracy(args)


if __name__ == "__main__":
    main()
