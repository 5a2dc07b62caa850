"""The ``lighthead-edge`` command line. Every heavy import (torch, OpenVINO, ...) happens inside its command, and every
``LightheadError`` becomes one line on stderr plus a non-zero exit code."""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import click

from lighthead_edge.cli_types import COUNT, FRACTION, FRAME_SIZE, POSITIVE, SEED, THREADS, Finite
from lighthead_edge.errors import ConfigError, LightheadError
from lighthead_edge.runtime.isa import ISAS


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def number_list(kind: type[int] | type[float], low: float, high: float) -> Callable[..., tuple]:
    """A click callback: a comma-separated list of ``kind`` numbers, each in ``[low, high]`` -> a tuple (a usage
    error naming the option for an empty list, an empty item, nan, inf or a number out of range)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str) -> tuple:
        try:
            numbers = tuple(kind(item) for item in value.split(","))
        except ValueError:
            numbers = ()
        if not numbers or not all(math.isfinite(n) and low <= n <= high for n in numbers):
            raise click.BadParameter(f"{value!r}: give {kind.__name__}s in {low:g}..{high:g}, comma-separated")
        return numbers

    return parse


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lighthead-edge")
def cli() -> None:
    """Light-Head R-CNN from PyTorch to the camera: data, train, eval, compress, export, run."""


# ----------------------------------------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Make or fetch COCO-format datasets."""


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--num", default=800, show_default=True, type=COUNT, help="Training images.")
@click.option("--val", "num_val", default=None, type=COUNT, help="Validation images [default: num / 5].")
@click.option("--size", default=320, show_default=True, type=click.IntRange(64, 8192), help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=SEED)
def data_synth(out: str, num: int, num_val: int | None, size: int, seed: int) -> None:
    """Synthetic scenes (circle, square, triangle, star among clutter) -> OUT/train.json, OUT/val.json.

    OUT may hold a set this command wrote before (it is replaced), but no other dataset."""
    from lighthead_edge.data.synth import generate_dataset

    num_val = max(1, num // 5) if num_val is None else num_val
    info = generate_dataset(out, num, num_val, size=(size, size), seed=seed, progress=True)
    click.echo(f"wrote {num} train / {num_val} val images: {info['train']} {info['val']}")


@data.command("neon-trees")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--wheel", default=None, help="A local deepforest-2.1.0 wheel (offline use).")
@click.option("--cache", "cache_dir", default=None, help="Download cache [default: ~/.cache/lighthead-edge/downloads].")
@click.option("--tile", default=400, show_default=True, type=click.IntRange(32, 65535),
              help="Training tile side in pixels.")  # fmt: skip
@click.option("--overlap", default=100, show_default=True, type=click.IntRange(0, 65534),
              help="Overlap of neighbouring training tiles in pixels (less than --tile).")  # fmt: skip
@click.option("--holdout", default=0.0, show_default=True, type=Finite(0.0, 0.5),
              help="Fraction of each YELL crop's rows (bottom strip) held out as holdout.json.")  # fmt: skip
def data_neon(out: str, wheel: str | None, cache_dir: str | None, tile: int, overlap: int, holdout: float) -> None:
    """NEON airborne tree crowns: train on tiles of the YELL crops, evaluate on OSBS_029 + SOAP_061.

    With --holdout, the bottom strip of each YELL crop is also held out, as a larger in-domain split (holdout.json)
    whose AP is steadier than that of the two cross-site plots: use it to measure what pruning or INT8 costs.
    """
    from lighthead_edge.data.neon import prepare_neon

    info = prepare_neon(
        out, wheel=wheel, cache_dir=cache_dir, tile=tile, overlap=overlap, holdout=holdout, progress=True
    )
    held = f" and {info['num_holdout_boxes']} held-out boxes ({info['holdout']})" if holdout > 0 else ""
    click.echo(f"wrote {info['num_train_images']} train tiles and {info['num_val_boxes']} val boxes{held}: "
               f"{info['train']} {info['val']}")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- train
@cli.command()
@click.option("--data", "train_json", required=True, help="Training COCO json.")
@click.option("--val", "val_json", default=None, help="Validation COCO json (mAP per epoch, best kept).")
@click.option("--backbone", default="mobilenet_v2", show_default=True)
@click.option("--head", "head_size", type=click.Choice(["S", "L"]), default="S", show_default=True)
@click.option("--input-size", default=512, show_default=True, type=click.IntRange(64, 4096),
              help="Square input side (multiple of 16).")  # fmt: skip
@click.option("--anchor-scales", default="2,4,8,16,32", show_default=True, callback=number_list(float, 0.001, 4096),
              help="Anchor sizes in units of the stride.")  # fmt: skip
@click.option("--pretrained", default=None, help="Backbone weights file, or 'imagenet' (fetched once, cached).")
@click.option("--init", "init_checkpoint", default=None, help="Fine-tune from this model.pt.")
@click.option("--distill-from", "teacher_checkpoint", default=None,
              help="Distil from this model.pt while fine-tuning --init (a pruned model's original).")  # fmt: skip
@click.option("--epochs", default=12, show_default=True, type=COUNT)
@click.option("--iters", default=None, type=COUNT, help="Train for this many iterations instead of epochs.")
@click.option("--batch-size", default=4, show_default=True, type=COUNT)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True)
@click.option("--lr", default=None, type=POSITIVE, help="[default: 0.001 adamw, 0.02 sgd]")
@click.option("--max-minutes", default=None, type=POSITIVE, help="Wall-clock budget; stops, validates and saves.")
@click.option("--augment", type=click.Choice(["flip", "aerial"]), default="flip", show_default=True,
              help="aerial: also vertical flips, quarter turns and colour jitter (nadir imagery).")  # fmt: skip
@click.option("--warmup", default=100, show_default=True, type=click.IntRange(min=0), help="Warm-up iterations.")
@click.option("--threads", default=None, type=THREADS, help="torch threads [default: all cores].")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--resume", is_flag=True, help="Continue from <out>.last.pt.")
@click.option("--out", required=True, help="Where the best model.pt goes.")
def train(
    train_json: str, val_json: str | None, backbone: str, head_size: str, input_size: int,
    anchor_scales: tuple[float, ...],
    pretrained: str | None, init_checkpoint: str | None, teacher_checkpoint: str | None, epochs: int,
    iters: int | None, batch_size: int, optimizer: str, lr: float | None, max_minutes: float | None, augment: str,
    warmup: int, threads: int | None, seed: int, resume: bool, out: str,
) -> None:  # fmt: skip
    """Train (or fine-tune) a Light-Head R-CNN on COCO-format data."""
    from lighthead_edge.config import ModelConfig, TrainConfig
    from lighthead_edge.evaluate import format_metrics
    from lighthead_edge.modeling.checkpoint import check_output, load_checkpoint
    from lighthead_edge.modeling.pretrained import resolve_pretrained
    from lighthead_edge.train import last_path
    from lighthead_edge.train import train as run_training

    inputs = {"--data": train_json, "--val": val_json, "--init": init_checkpoint,
              "--distill-from": teacher_checkpoint, "--pretrained": pretrained}  # fmt: skip
    check_output(out, inputs)
    check_output(last_path(Path(out)), inputs, "--out's resumable state")
    tcfg = TrainConfig(
        epochs=epochs, iters=iters, batch_size=batch_size, optimizer=optimizer, lr=lr, warmup_iters=warmup,
        threads=threads, seed=seed, max_minutes=max_minutes, augment=augment,
    )  # fmt: skip
    mcfg = ModelConfig(backbone=backbone, head_size=head_size, input_size=(input_size, input_size),
                       anchor_scales=anchor_scales)  # fmt: skip
    init_model, init_classes, init_meta = None, None, None
    if init_checkpoint:
        init_model, init_classes, payload = load_checkpoint(init_checkpoint)
        init_meta = payload.get("meta", {})
    extra_loss = _teacher_loss(teacher_checkpoint, init_model, init_classes) if teacher_checkpoint else None
    try:
        result = run_training(
            train_json=train_json, val_json=val_json, out=out, model_config=mcfg, train_config=tcfg,
            pretrained=resolve_pretrained(pretrained, mcfg.backbone) if pretrained else None, init_model=init_model,
            init_classes=init_classes, init_meta=init_meta, resume=resume, extra_loss=extra_loss,
            command=command_line(),
        )  # fmt: skip
    finally:
        if extra_loss is not None:
            extra_loss.close()
    best = format_metrics(result.best_metrics) if result.best_metrics else "no validation"
    click.echo(f"saved {result.checkpoint}  ({best}; {result.seconds / 60:.1f} min)")


def command_line() -> str:
    """The command line of this process, as a checkpoint records it (the program as ``lighthead-edge``, whether it
    ran as the console script or as ``python -m lighthead_edge.cli``)."""
    return shlex.join(["lighthead-edge", *sys.argv[1:]])


def _teacher_loss(teacher_checkpoint: str, student, student_classes):
    """The distillation loss of ``train --distill-from``: the teacher's RoI logits and deltas (``RoIDistiller``)."""
    from lighthead_edge.compress.distill import RoIDistiller
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    if student is None:
        raise ConfigError("--distill-from needs --init: it distils into a model being fine-tuned")
    teacher, teacher_classes, _ = load_checkpoint(teacher_checkpoint)
    if list(teacher_classes) != list(student_classes):
        raise ConfigError(f"--distill-from {teacher_checkpoint} has classes {teacher_classes}, "
                          f"--init has {student_classes}")  # fmt: skip
    return RoIDistiller(teacher, student)


# ----------------------------------------------------------------------------------------------------- eval, info
@cli.command("eval")
@click.argument("model")
@click.option("--data", "data_json", required=True, help="COCO json to evaluate on.")
@click.option("--json", "json_out", default=None, help="Also write the metrics (and detections) as JSON here.")
@click.option("--batch-size", default=4, show_default=True, type=COUNT)
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino"]), default=None,
              help="Bundle only: the engine [default: openvino].")  # fmt: skip
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Bundle only: which artifact [default: fp32].")  # fmt: skip
@click.option("--threads", default=None, type=THREADS, help="Bundle only: inference threads [default: engine's].")
@click.option("--diagnose", is_flag=True,
              help="model.pt only: also measure what limits AP: AP per image (site), recall at IoU 0.3/0.5/0.7, "
                   "GT box sizes against the RPN's anchors.")  # fmt: skip
def eval_cmd(
    model: str, data_json: str, json_out: str | None, batch_size: int, backend: str | None, precision: str | None,
    threads: int | None, diagnose: bool,
) -> None:  # fmt: skip
    """COCO mAP (pycocotools) of MODEL on a COCO json: a model.pt (torch), or a bundle folder (through the runtime)."""
    from lighthead_edge.evaluate import format_metrics
    from lighthead_edge.modeling.checkpoint import check_output
    from lighthead_edge.runtime.outputs import special_kind, write_atomic

    det_path = None
    if json_out:
        check_output(json_out, {"MODEL": model, "--data": data_json}, "--json", devices=True)  # written into a device
        if special_kind(json_out) is None:  # only beside a regular file: never /dev/full.detections.json
            det_path = Path(json_out).with_suffix(".detections.json")
            check_output(det_path, {"MODEL": model, "--data": data_json}, "--json's detections file")
    diagnosis = None
    if Path(model).is_dir():
        from lighthead_edge.evaluate import evaluate_bundle

        if diagnose:
            raise ConfigError("--diagnose measures a model.pt (its anchors and input size); MODEL is a bundle: give "
                              "the checkpoint it was exported from")  # fmt: skip
        backend = backend or "openvino"
        metrics = evaluate_bundle(
            model, data_json, backend=backend, precision=precision, threads=threads, results_path=det_path
        )
        label = f"{Path(model).name} ({backend}/{precision or 'fp32'})"
    else:
        from lighthead_edge.evaluate import evaluate_model
        from lighthead_edge.modeling.checkpoint import load_checkpoint

        if backend or precision or threads:
            raise ConfigError("--backend, --precision and --threads apply to bundles; MODEL is a model.pt")
        net, classes, payload = load_checkpoint(model)
        if diagnose:
            from lighthead_edge.diagnose import evaluate_with_diagnosis, trained_rpn_fg_iou

            metrics, diagnosis = evaluate_with_diagnosis(net, data_json, batch_size=batch_size, results_path=det_path,
                                                         rpn_fg_iou=trained_rpn_fg_iou(payload))  # fmt: skip
        else:
            metrics = evaluate_model(net, data_json, batch_size=batch_size, results_path=det_path)
        label = Path(model).name
    click.echo(f"{label} on {Path(data_json).name}: {format_metrics(metrics)}")
    if diagnosis is not None:
        from lighthead_edge.diagnose import format_diagnosis

        click.echo(format_diagnosis(diagnosis))
    if json_out:
        record = {"model": model, "data": data_json, "metrics": metrics}
        if diagnosis is not None:
            record["diagnosis"] = diagnosis
        write_atomic(json_out, json.dumps(record, indent=2), "--json")


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (classes, settings, training, costs).")
def info(model: str, as_json: bool) -> None:
    """Classes, settings, and parameters + MACs per stage of MODEL (a model.pt)."""
    import dataclasses

    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.modeling.summary import format_costs, stage_costs

    net, classes, payload = load_checkpoint(model)
    meta = payload.get("meta") or {}
    costs = stage_costs(net)
    if as_json:
        click.echo(json.dumps({
            "model": model, "classes": classes, "config": net.config.to_dict(), "train": payload.get("train"),
            "val": meta.get("val") or {}, "pruned": meta.get("pruned"),
            "stages": [dataclasses.asdict(r) for r in costs],
        }, indent=2))  # fmt: skip
        return
    c = net.config
    click.echo(f"{model}: {c.backbone}-{c.head_size}, input {c.input_size[0]}x{c.input_size[1]}, "
               f"{len(classes)} classes {classes}")  # fmt: skip
    val = meta.get("val") or {}
    if val:
        click.echo("validation: " + "  ".join(f"{k} {v:.3f}" for k, v in val.items() if k.startswith("AP")))
    click.echo(format_costs(costs))


from lighthead_edge.export.commands import export_cmd  # noqa: E402 - click only; the export runs inside it
from lighthead_edge.runner_cli import run_cmd  # noqa: E402 - click only; the runtime is imported when it runs
from lighthead_edge.serve_cli import serve_cmd  # noqa: E402 - click only; pyzmq is imported when it runs

cli.add_command(export_cmd)
cli.add_command(run_cmd)
cli.add_command(serve_cmd)


@cli.command()
@click.option("--out", default="runs/demo", show_default=True, help="Where the data, model and pictures go.")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="A NEON checkpoint to start from [default: models/neon-mbv2-s.pt, the shipped one; "
                   "models/neon-mbv2-s-pruned.pt is its pruned variant].")  # fmt: skip
@click.option("--fine-tune", is_flag=True,
              help="Start from ImageNet weights and fine-tune for --minutes first: the whole training path (held-out "
                   "AP50 0.55 after 6 minutes on 2 cores, against the shipped model's 0.585).")  # fmt: skip
@click.option("--minutes", default=6.0, show_default=True, type=POSITIVE, help="Training budget of --fine-tune.")
@click.option("--threads", default=None, type=THREADS, help="torch threads [default: all cores].")
def demo(out: str, model: str | None, fine_tune: bool, minutes: float, threads: int | None) -> None:
    """The whole job on a built-in default: NEON tree crowns, the shipped model, mAP, tune, pictures, video."""
    from lighthead_edge.demo import run_demo

    if fine_tune and model:
        raise ConfigError("give --model or --fine-tune, not both (--fine-tune trains its own model)")
    run_demo(out, model=model, fine_tune=fine_tune, minutes=minutes, threads=threads)


# ---------------------------------------------------------------------------------------------------------- prune
DEFAULT_FINETUNE_EPOCHS = 3
PRUNE_WARMUP_ITERS = 50
TIME_BOUND_EPOCHS = 100_000  # "until --finetune-minutes is spent": the time budget ends the run and its LR schedule


def finetune_epochs_of(epochs: int | None, iters: int | None, minutes: float | None) -> int:
    """The prune command's fine-tuning length: ``--finetune-epochs`` if given; else, with only
    ``--finetune-minutes``, as many epochs as the time allows (3 epochs are 57 iterations on a 19-image set, which
    would make the budget meaningless); else 3."""
    if epochs is not None and iters is not None:
        raise ConfigError("give --finetune-epochs or --finetune-iters, not both")
    if epochs is not None:
        return epochs
    return TIME_BOUND_EPOCHS if minutes is not None and iters is None else DEFAULT_FINETUNE_EPOCHS


@cli.command()
@click.argument("model")
@click.option("--ratio", default=0.5, show_default=True, type=FRACTION,
              help="Fraction of channels removed from each pruned group, in [0, 1).")  # fmt: skip
@click.option("--data", "train_json", required=True, help="Training COCO json (fine-tuning and BN statistics).")
@click.option("--val", "val_json", default=None, help="Validation COCO json: AP before and after pruning.")
@click.option("--finetune-epochs", default=None, type=click.IntRange(min=0),
              help="Fine-tuning epochs [default: 3, or as many as --finetune-minutes allows when only that is given; "
                   "0 skips it].")  # fmt: skip
@click.option("--finetune-iters", default=None, type=click.IntRange(min=0),
              help="Fine-tune for this many iterations instead (0 skips it).")  # fmt: skip
@click.option("--finetune-minutes", default=None, type=POSITIVE,
              help="Wall-clock budget for fine-tuning; the LR schedule ends on whichever budget runs out "
                   "first.")  # fmt: skip
@click.option("--thin-ratio", default=None, type=FRACTION,
              help="The thin head's own ratio (C_mid and PS groups) [default: --ratio].")  # fmt: skip
@click.option("--fc-ratio", default=0.0, show_default=True, type=FRACTION,
              help="Fraction of the fc-2048's hidden units removed (cls/box inputs follow).")  # fmt: skip
@click.option("--rpn-ratio", default=0.0, show_default=True, type=FRACTION,
              help="Fraction of the RPN's mid channels (its 3x3 conv's outputs) removed (its 1x1 outputs "
                   "follow).")  # fmt: skip
@click.option("--hires-ratio", default=None, type=FRACTION,
              help="The ratio of the backbone's groups at stride <= 4, where a channel costs 4-16x the MACs and "
                   "memory traffic of one deeper [default: --ratio].")  # fmt: skip
@click.option("--augment", type=click.Choice(["flip", "aerial"]), default="flip", show_default=True,
              help="Fine-tuning augmentation, as for train (aerial: flips, quarter turns, colour).")  # fmt: skip
@click.option("--distill", is_flag=True, help="Distil from the unpruned model (RoI logits + deltas) while tuning.")
@click.option("--reconstruct/--no-reconstruct", default=True, show_default=True,
              help="Prune the head by least-squares reconstruction on training batches: C_mid by a rank-r "
                   "factorisation, PS groups and fc units chosen and refitted (He et al. 2017).")  # fmt: skip
@click.option("--calib-batches", default=32, show_default=True, type=COUNT,
              help="Training batches the reconstruction uses.")  # fmt: skip
@click.option("--importance", type=click.Choice(["l1", "l2", "bn"]), default="l1", show_default=True)
@click.option("--round-to", default=8, show_default=True, type=click.IntRange(0, 4096),
              help="Kept channel counts are multiples of this (0: any).")  # fmt: skip
@click.option("--backbone/--no-backbone", default=True, show_default=True, help="Prune backbone channels.")
@click.option("--thin-head/--no-thin-head", default=True, show_default=True, help="Prune C_mid and PS groups.")
@click.option("--lr", default=5e-4, show_default=True, type=POSITIVE, help="Fine-tuning AdamW learning rate.")
@click.option("--batch-size", default=4, show_default=True, type=COUNT)
@click.option("--threads", default=None, type=THREADS, help="torch threads [default: all cores].")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--out", required=True, help="Where the pruned model.pt goes.")
def prune(
    model: str, ratio: float, train_json: str, val_json: str | None, finetune_epochs: int | None,
    finetune_iters: int | None, finetune_minutes: float | None, thin_ratio: float | None, fc_ratio: float,
    rpn_ratio: float, hires_ratio: float | None, augment: str, distill: bool, reconstruct: bool,
    calib_batches: int, importance: str, round_to: int, backbone: bool, thin_head: bool, lr: float, batch_size: int,
    threads: int | None, seed: int, out: str,
) -> None:  # fmt: skip
    """Prune MODEL (backbone channels, thin-map C_mid, whole PS groups; optionally the fc and RPN widths), fine-tune
    it and save it; prints the per-stage MACs/params and the val AP before and after."""
    from lighthead_edge.compress.pipeline import PruneSettings, prune_checkpoint
    from lighthead_edge.compress.prune import Importance
    from lighthead_edge.config import TrainConfig

    tcfg = TrainConfig(
        epochs=finetune_epochs_of(finetune_epochs, finetune_iters, finetune_minutes), iters=finetune_iters, lr=lr,
        batch_size=batch_size, warmup_iters=PRUNE_WARMUP_ITERS, threads=threads, seed=seed,
        max_minutes=finetune_minutes, augment=augment,
    )  # fmt: skip
    settings = PruneSettings(
        ratio=ratio, importance=Importance(importance), round_to=round_to or None, backbone=backbone,
        thin_head=thin_head, distill=distill, fc_ratio=fc_ratio, thin_ratio=thin_ratio, rpn_ratio=rpn_ratio,
        hires_ratio=hires_ratio, reconstruct=reconstruct, calib_batches=calib_batches,
    )  # fmt: skip
    run = prune_checkpoint(model, out, train_json=train_json, val_json=val_json, settings=settings,
                           train_config=tcfg, command=command_line(), log=_echo)  # fmt: skip
    click.echo(run.report.format())
    click.echo(run.format_ap())
    click.echo(f"saved {run.out}")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--calib", required=True, help="Calibration images: a folder, a COCO json or a video file.")
@click.option("--backend", type=click.Choice(["openvino", "onnxruntime", "both"]), default="both", show_default=True)
@click.option("--calib-size", default=300, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Calibration images to use.")  # fmt: skip
@click.option("--selection", type=click.Choice(["uniform", "diverse"]), default="uniform", show_default=True,
              help="Evenly spaced over the source, or greedy k-center on colour thumbnails.")  # fmt: skip
@click.option("--val", "val_json", default=None, help="COCO json: AP/AP50 of every variant (and accuracy control).")
@click.option("--max-drop", default=None, type=click.FloatRange(0, 1, min_open=True),
              help="With --val: accuracy control, max AP drop, in (0, 1] (0.01 = 1 pt).")  # fmt: skip
@click.option("--prune", "prune_ratio", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Prune at this ratio first, in (0, 1) (needs --data).")  # fmt: skip
@click.option("--data", "train_json", default=None, help="Training COCO json for --prune.")
@click.option("--finetune-epochs", default=0, show_default=True, type=click.IntRange(0, 100_000),
              help="With --prune: fine-tuning epochs.")  # fmt: skip
@click.option("--ort-ranges", type=click.Choice(["auto", "minmax", "averaged"]), default="auto", show_default=True,
              help="ONNX Runtime activation ranges: calibration extremes, per-image min/max averaged, or auto "
                   "(with --val both, keeping the higher AP; else minmax).")  # fmt: skip
@click.option(
    "--keep-float",
    multiple=True,
    metavar="NAME",
    help="Keep the layers whose node names contain NAME in float (repeatable), e.g. roi_heads/head/fc/.",
)
@click.option("--frame-size", default=None, type=FRAME_SIZE,
              help="Camera frame size: a frame-in graph (letterbox inside, boxes in frame pixels), e.g. 1280x720.")
@click.option("--rois", default=None, type=click.IntRange(1, 100_000),
              help="Post-NMS RoI slots of the graphs [default: the checkpoint's rpn_post_nms_top_n_test]; more than "
                   "the pre-NMS candidates is clipped.")  # fmt: skip
@click.option("--latency-aware/--no-latency-aware", default=True, show_default=True,
              help="Time every quantized layer in FP32 and INT8 on this CPU and keep the ones INT8 makes slower in "
                   "float.")  # fmt: skip
@click.option("--layout", type=click.Choice(["native", "detection_output"]), default="native", show_default=True,
              help="detection_output: also the DL Streamer / model_api IR ([1, 1, N, 7] output), INT8 included.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 1024),
              help="Threads for the latency figures.")  # fmt: skip
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Timed runs per latency figure.")  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write (replaced whole).")
def quantize(checkpoint: str, calib: str, backend: str, calib_size: int, selection: str, val_json: str | None,
             max_drop: float | None, prune_ratio: float | None, train_json: str | None, finetune_epochs: int,
             ort_ranges: str, keep_float: tuple[str, ...], frame_size: tuple[int, int] | None, rois: int | None,
             latency_aware: bool, layout: str, threads: int, runs: int, out: str) -> None:  # fmt: skip
    """INT8 post-training quantization of CHECKPOINT: a bundle with FP32 and INT8 artifacts plus a report."""
    from lighthead_edge.compress.calibration import Selection
    from lighthead_edge.compress.quantize import OrtRanges, QuantizeSettings, parse_backends, quantize_checkpoint
    from lighthead_edge.measure import BenchSettings

    settings = QuantizeSettings(
        backends=parse_backends(backend), calib_size=calib_size, selection=Selection(selection), val_json=val_json,
        max_drop=max_drop, prune_ratio=prune_ratio, train_json=train_json, finetune_epochs=finetune_epochs,
        bench=BenchSettings(threads=(threads,), runs=runs, val_json=val_json),
        ort_ranges=OrtRanges(ort_ranges), keep_float=tuple(keep_float), frame_size=frame_size, rois=rois,
        latency_aware=latency_aware, layout=layout,
    )  # fmt: skip
    run = quantize_checkpoint(checkpoint, out, calib=calib, settings=settings, log=_echo)
    try:
        from lighthead_edge.runtime.runner import remember_bundle

        remember_bundle(run.bundle)  # `lighthead-edge run` without --model now runs this bundle
    except ImportError:
        pass
    click.echo(f"bundle: {run.bundle}")
    click.echo(f"report: {run.report}")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--val", "val_json", required=True, help="COCO json: AP of every point of the search.")
@click.option("--calib", required=True, help="Calibration images: a folder, a COCO json or a video file.")
@click.option("--backend", type=click.Choice(["openvino", "onnxruntime"]), default="openvino", show_default=True,
              help="The engine to tune for (it is the one that is timed).")  # fmt: skip
@click.option("--rois", default="25,50,100,200,300", show_default=True, callback=number_list(int, 1, 100_000),
              help="RoI budgets to try (the checkpoint's own is always tried: the FP32 reference).")  # fmt: skip
@click.option("--max-drop", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Largest AP drop against FP32 at the checkpoint's budget, in (0, 1] (0.01 = 1 pt).")  # fmt: skip
@click.option("--calib-size", default=300, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--selection", type=click.Choice(["uniform", "diverse"]), default="uniform", show_default=True)
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 1024), help="Threads for latency.")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Timed runs per latency figure.")  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write (replaced whole).")
@click.option("--isa", type=click.Choice(list(ISAS)), default="native", show_default=True,
              help="Cap OpenVINO's oneDNN kernels at this ISA, to tune for an older CPU (e.g. avx2) on this one "
                   "(OpenVINO only).")  # fmt: skip
@click.option("--tie", default=0.03, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Points within this fraction of the fastest one's latency count as equally fast; the highest AP "
                   "of them wins (0: the fastest always).")  # fmt: skip
def tune(checkpoint: str, val_json: str, calib: str, backend: str, rois: tuple[int, ...], max_drop: float,
         calib_size: int, selection: str, threads: int, runs: int, out: str, isa: str, tie: float) -> None:  # fmt: skip
    """Search the RoI budget and which layers run INT8 on this CPU; write the fastest bundle within --max-drop,
    with a report (tune.md) and an AP-against-latency plot (tune.png)."""
    from lighthead_edge.compress.calibration import Selection
    from lighthead_edge.compress.tune import TuneSettings, tune_checkpoint
    from lighthead_edge.runtime.bundle import Backend
    from lighthead_edge.runtime.isa import cap_isa

    settings = TuneSettings(
        val_json=val_json, backend=Backend(backend), rois=tuple(rois), max_drop=max_drop, calib_size=calib_size,
        selection=Selection(selection), threads=threads, runs=runs, isa=isa, tie=tie,
    )  # fmt: skip
    cap_isa(isa)  # before anything compiles an OpenVINO model in this process (after the settings' own checks)
    run = tune_checkpoint(checkpoint, out, calib=calib, settings=settings, log=_echo)
    try:
        from lighthead_edge.runtime.runner import remember_bundle

        remember_bundle(run.bundle)
    except ImportError:
        pass
    click.echo(f"bundle: {run.bundle}")
    click.echo(f"report: {run.report}")


@cli.command()
@click.argument("model")
@click.option("--val", "val_json", default=None, help="COCO json: AP/AP50 per variant.")
@click.option("--threads", default="1,2", show_default=True, callback=number_list(int, 1, 1024),
              help="Comma-separated thread counts for latency.")  # fmt: skip
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Timed runs per latency figure.")  # fmt: skip
@click.option("--out", default=None, help="Folder for report.md/json/png [default: the bundle, or beside model.pt].")
@click.option(
    "--isa",
    type=click.Choice(list(ISAS)),
    default="native",
    show_default=True,
    help="Cap OpenVINO's oneDNN kernels at this ISA, to measure an older CPU (e.g. avx2) on this one.",
)
def bench(model: str, val_json: str | None, threads: tuple[int, ...], runs: int, out: str | None, isa: str) -> None:
    """Measure every variant of MODEL (a bundle folder, or a model.pt: torch eager FP32) and write a report."""
    from lighthead_edge.compress.bench import bench_model
    from lighthead_edge.measure import BenchSettings
    from lighthead_edge.runtime.isa import cap_isa

    cap_isa(isa)  # before anything compiles an OpenVINO model in this process
    settings = BenchSettings(threads=threads, runs=runs, val_json=val_json, isa=isa)
    report = bench_model(model, settings, out=out, log=_echo)
    click.echo(f"report: {report}")


def main() -> None:
    """Entry point: one-line errors and exit codes instead of tracebacks for anything a user can cause."""
    try:
        cli.main(standalone_mode=False)
    except LightheadError as exc:
        _echo(f"error: {exc}")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, as every other error: what is wrong and where the help is
        help_hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _echo(f"error: {exc.format_message()}{help_hint}")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _echo("interrupted")
        sys.exit(130)
    except (OSError, FloatingPointError) as exc:
        _echo(f"error: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
