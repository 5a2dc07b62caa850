"""Every option of ``train`` and ``prune`` reaches the code that uses it: an option parsed and dropped fails here.

Each case runs the real command with one non-default value and checks the consumer: the dataset, the model, the
optimizer, the schedule, the loader, ``prune_model``, ... No training happens: ``_Run.loop`` (the last step before
training) raises ``Stop`` with the run it belongs to, and the checks read that run's real objects.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from lighthead_edge import train as train_module
from lighthead_edge.cli import TIME_BOUND_EPOCHS, cli
from lighthead_edge.compress import pipeline
from lighthead_edge.compress.distill import RoIDistiller
from lighthead_edge.compress.prune import Importance
from lighthead_edge.modeling.checkpoint import save_checkpoint
from lighthead_edge.modeling.detector import build_detector


class Stop(Exception):
    """The run reached ``_Run.loop``: every setting has been handed to its consumer."""


@dataclass
class Seen:
    """What the spies saw during one command."""

    run: Any = None  # the train._Run that was about to loop
    threads: list[int] = field(default_factory=list)  # torch.set_num_threads calls
    restored: bool = False
    prune: dict[str, Any] = field(default_factory=dict)  # prune_model's keyword arguments
    calib: list[int] = field(default_factory=list)  # batch sizes of one pass over the reconstruction batches
    evaluated: list[str] = field(default_factory=list)  # the COCO json of every evaluate_model call
    bn_batch_size: int | None = None  # of the BN re-estimation after pruning


@pytest.fixture(scope="module")
def files(tmp_path_factory, synth_set, tiny_config) -> dict[str, Path]:
    """Two tiny checkpoints with the synthetic classes (distinct weights) and a tiny backbone weights file."""
    from lighthead_edge.data.coco import CocoDetection

    tmp = tmp_path_factory.mktemp("options")
    classes = CocoDetection(synth_set["train"], input_size=(128, 128)).class_names
    paths = {"data": Path(synth_set["train"]), "val": Path(synth_set["val"])}
    for seed, name in ((1, "model"), (2, "teacher")):
        torch.manual_seed(seed)
        paths[name] = save_checkpoint(tmp / f"{name}.pt", build_detector(tiny_config), classes)
    torch.manual_seed(3)
    paths["weights"] = tmp / "tiny_backbone.pth"
    torch.save(build_detector(tiny_config).backbone.state_dict(), paths["weights"])
    return paths


@pytest.fixture(scope="module")
def pruned_once() -> dict:
    """One real pruning result, reused: what prune_model returns doesn't matter to these checks, only what it got."""
    return {}


@pytest.fixture
def run_command(monkeypatch, files, tmp_path, pruned_once):
    """run_command(*args) -> Seen: ``lighthead-edge`` with ``args`` ({name} filled from ``files``), up to the loop."""
    seen = Seen()

    def stop(self):
        seen.run = self
        raise Stop

    def prune_spy(model, **kw):
        seen.prune = {"model": model, **kw}
        if kw["calibration"] is not None:
            seen.calib = [len(images) for images, _ in kw["calibration"]()]
        if not pruned_once:
            pruned_once["result"] = real_prune(model, ratio=0.5, bn_batches=0)
        pruned, report = pruned_once["result"]
        return copy.deepcopy(pruned), report

    def bn_spy(model, train_json, *, batches, batch_size):
        seen.bn_batch_size = batch_size
        return 0

    def evaluate_spy(model, data_json, **kw):
        seen.evaluated.append(str(data_json))
        return {"AP": 0.1, "AP50": 0.2}

    real_prune = pipeline.prune_model
    monkeypatch.setattr(train_module._Run, "loop", stop)
    monkeypatch.setattr(train_module._Run, "restore", lambda self: setattr(seen, "restored", True))
    monkeypatch.setattr(torch, "set_num_threads", seen.threads.append)
    monkeypatch.setattr(pipeline, "prune_model", prune_spy)
    monkeypatch.setattr("lighthead_edge.compress.finetune.recalibrate_bn", bn_spy)
    monkeypatch.setattr("lighthead_edge.evaluate.evaluate_model", evaluate_spy)

    def run(*args: str) -> Seen:
        names = {**{k: str(v) for k, v in files.items()}, "out": str(tmp_path / "out.pt")}
        with pytest.raises(Stop):
            cli.main(args=[a.format(**names) for a in args], standalone_mode=False)
        return seen

    return run


def _weights_of(path: Path) -> torch.Tensor:
    return torch.load(path, weights_only=True)["state_dict"]["roi_heads.head.fc.weight"]


def _lrs(run) -> set[float]:
    return {g["initial_lr"] for g in run.optimizer.param_groups}


# option name -> (arguments added to the base command, check(seen, files))
TRAIN = {
    "train_json": ([], lambda s, f: s.run.train_set.coco_path == f["data"]),
    "val_json": (["--val", "{val}"], lambda s, f: s.run.val_set.coco_path == f["val"]),
    "backbone": ([], lambda s, f: type(s.run.model.backbone).__name__ == "TinyBackbone"),
    "head_size": (["--head", "L"], lambda s, f: s.run.model.thin_head.col_a.out_channels == 256),
    "input_size": (["--input-size", "96"],
                   lambda s, f: s.run.train_set.input_size == (96, 96) == s.run.model.config.input_size),
    "anchor_scales": (["--anchor-scales", "1,3"],
                      lambda s, f: s.run.model.rpn.anchor_scales == (1.0, 3.0)
                      and s.run.model.rpn.head.cls_logits.out_channels == 6),
    "pretrained": (["--pretrained", "{weights}"],
                   lambda s, f: torch.equal(s.run.model.backbone.state_dict()["features.0.0.weight"],
                                            torch.load(f["weights"], weights_only=True)["features.0.0.weight"])
                   and not any(p.requires_grad for p in s.run.model.backbone.features[:2].parameters())),
    "init_checkpoint": (["--init", "{model}"],
                        lambda s, f: torch.equal(s.run.model.roi_heads.head.fc.weight, _weights_of(f["model"]))),
    "teacher_checkpoint": (["--init", "{model}", "--distill-from", "{teacher}"],
                           lambda s, f: isinstance(s.run.extra_loss, RoIDistiller)
                           and torch.equal(s.run.extra_loss.teacher.roi_heads.head.fc.weight,
                                           _weights_of(f["teacher"]))),
    "epochs": (["--epochs", "3"], lambda s, f: s.run.epochs == 3 and s.run.total_iters == 3 * len(s.run.loader)),
    "iters": (["--iters", "5"], lambda s, f: s.run.total_iters == 5),
    "batch_size": (["--batch-size", "3"], lambda s, f: s.run.loader.batch_size == 3),
    "optimizer": (["--optimizer", "sgd"],
                  lambda s, f: isinstance(s.run.optimizer, torch.optim.SGD) and _lrs(s.run) == {0.02}),
    "lr": (["--lr", "0.005"], lambda s, f: _lrs(s.run) == {0.005}),
    "max_minutes": (["--max-minutes", "2"], lambda s, f: s.run.budget_s == 120),
    "augment": (["--augment", "aerial"], lambda s, f: s.run.train_set.augment == "aerial" and s.run.train_set.train),
    "warmup": (["--warmup", "7"],
               lambda s, f: s.run.scheduler.lr_lambdas[0](3) == pytest.approx(0.01 + 0.99 * 3 / 7)),
    "threads": (["--threads", "1"], lambda s, f: s.threads == [1]),
    "seed": (["--seed", "5"], lambda s, f: s.run.loader.generator.initial_seed() == 5),
    "resume": (["--resume"], lambda s, f: s.restored),
    "out": ([], lambda s, f: s.run.out.name == "out.pt"),
}  # fmt: skip

PRUNE = {
    "model": ([], lambda s, f: torch.equal(s.prune["model"].roi_heads.head.fc.weight, _weights_of(f["model"]))),
    "ratio": (["--ratio", "0.25"], lambda s, f: s.prune["ratio"] == 0.25),
    "train_json": ([], lambda s, f: s.run.train_set.coco_path == f["data"] and s.calib),
    "val_json": (["--val", "{val}"],
                 lambda s, f: s.evaluated == [str(f["val"])] * 2 and s.run.val_set.coco_path == f["val"]),
    "finetune_epochs": (["--finetune-epochs", "2"], lambda s, f: s.run.epochs == 2),
    "finetune_iters": (["--finetune-iters", "3"], lambda s, f: s.run.total_iters == 3),
    "finetune_minutes": (["--finetune-minutes", "0.5"],
                         lambda s, f: s.run.budget_s == 30 and s.run.cfg.epochs == TIME_BOUND_EPOCHS),
    "thin_ratio": (["--thin-ratio", "0.3"], lambda s, f: s.prune["thin_ratio"] == 0.3),
    "fc_ratio": (["--fc-ratio", "0.5"], lambda s, f: s.prune["fc_ratio"] == 0.5),
    "rpn_ratio": (["--rpn-ratio", "0.5"], lambda s, f: s.prune["rpn_ratio"] == 0.5),
    "hires_ratio": (["--hires-ratio", "0.6"], lambda s, f: s.prune["hires_ratio"] == 0.6),
    "augment": (["--augment", "aerial"], lambda s, f: s.run.train_set.augment == "aerial"),
    "distill": (["--distill"],
                lambda s, f: isinstance(s.run.extra_loss, RoIDistiller)
                and torch.equal(s.run.extra_loss.teacher.roi_heads.head.fc.weight, _weights_of(f["model"]))),
    "reconstruct": (["--no-reconstruct"], lambda s, f: s.prune["calibration"] is None),
    "calib_batches": (["--calib-batches", "2"], lambda s, f: len(s.calib) == 2),
    "importance": (["--importance", "l2"], lambda s, f: s.prune["importance"] is Importance.L2),
    "round_to": (["--round-to", "4"], lambda s, f: s.prune["round_to"] == 4),
    "backbone": (["--no-backbone"], lambda s, f: s.prune["backbone"] is False),
    "thin_head": (["--no-thin-head"], lambda s, f: s.prune["thin_head"] is False),
    "lr": (["--lr", "0.002"], lambda s, f: _lrs(s.run) == {0.002}),
    "batch_size": (["--batch-size", "3"],
                   lambda s, f: s.run.loader.batch_size == 3 and s.calib[0] == 3 and s.bn_batch_size == 3),
    "threads": (["--threads", "1"], lambda s, f: 1 in s.threads),
    "seed": (["--seed", "5"], lambda s, f: s.run.loader.generator.initial_seed() == 5),
    "out": ([], lambda s, f: s.run.out.name == "out.pt"),
}  # fmt: skip

BASE = {
    "train": ["train", "--data", "{data}", "--backbone", "tiny", "--input-size", "128", "--out", "{out}"],
    "prune": ["prune", "{model}", "--data", "{data}", "--finetune-iters", "1", "--out", "{out}"],
}
TABLES = {"train": TRAIN, "prune": PRUNE}


@pytest.mark.parametrize("command", sorted(TABLES))
def test_every_option_has_a_case(command):
    assert {p.name for p in cli.commands[command].params} == set(TABLES[command])


@pytest.mark.parametrize("command,option", [(c, o) for c in sorted(TABLES) for o in TABLES[c]])
def test_option_reaches_its_consumer(command, option, run_command, files):
    args, check = TABLES[command][option]
    base = BASE[command]
    if command == "prune" and option in ("finetune_epochs", "finetune_minutes"):
        base = [a for a in base if a not in ("--finetune-iters", "1")]
    seen = run_command(*base, *args)
    assert check(seen, files), f"{command} {option}: {args} did not reach its consumer"


def test_a_check_fails_without_its_option(run_command, files):
    """The checks can fail: with the base command alone, the non-default cases do not hold."""
    seen = run_command(*BASE["train"])
    for option in ("augment", "lr", "warmup", "batch_size", "seed", "optimizer", "max_minutes"):
        assert not TRAIN[option][1](seen, files), option


def test_aerial_training_is_recorded_and_info_json_shows_it(cli, synth_set, tmp_path):
    out = tmp_path / "aerial.pt"
    code, _, err = cli("train", "--data", synth_set["train"], "--backbone", "tiny", "--input-size", "128",
                       "--augment", "aerial", "--iters", "1", "--batch-size", "8", "--out", out)  # fmt: skip
    assert code in (0, None), err
    record = torch.load(out, weights_only=True)["train"]
    assert record["settings"]["augment"] == "aerial" and record["settings"]["lr"] == 1e-3
    assert record["settings"]["losses"]["roi_batch_size"] == 256 and record["settings"]["frozen_stages"] == 0
    assert "--augment aerial" in record["command"]
    code, text, err = cli("info", out, "--json")
    assert code in (0, None), err
    info = json.loads(text)
    assert info["train"] == record and info["classes"] == ["circle", "square", "triangle", "star"]
    assert info["config"]["backbone"] == "tiny" and info["val"] == {}
    assert [s["stage"] for s in info["stages"]] == ["backbone", "rpn", "thin_map", "rcnn_head"]
    # a pruned checkpoint records its own run and its pruning settings
    pruned = tmp_path / "pruned.pt"
    code, _, err = cli("prune", out, "--data", synth_set["train"], "--ratio", "0.25", "--finetune-epochs", "0",
                       "--no-reconstruct", "--out", pruned)  # fmt: skip
    assert code in (0, None), err
    payload = torch.load(pruned, weights_only=True)
    assert payload["meta"]["pruned"]["settings"]["ratio"] == 0.25
    assert payload["meta"]["pruned"]["settings"]["importance"] == "l1"
    assert payload["train"]["settings"]["lr"] == 5e-4 and "--ratio 0.25" in payload["train"]["command"]


def test_prune_in_memory_returns_the_fine_tuned_model(files, tmp_path):
    from lighthead_edge.config import TrainConfig
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, classes, payload = load_checkpoint(files["model"])
    run = pipeline.prune_and_finetune(
        model, classes, train_json=files["data"], settings=pipeline.PruneSettings(ratio=0.25, reconstruct=False),
        train_config=TrainConfig(iters=1, batch_size=8, warmup_iters=1), source_meta=payload["meta"],
        progress_bar=False, log=lambda m: None,
    )  # fmt: skip
    assert run.out is None and not run.model.training
    assert run.model.roi_heads.head.fc.in_features < model.roi_heads.head.fc.in_features
    assert run.meta["pruned"]["settings"]["reconstruct"] is False and run.meta["epoch"] == 1
    assert run.train["settings"]["iters"] == 1 and run.train["command"] is None
    assert not list(tmp_path.iterdir())
