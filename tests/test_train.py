"""Training: a small but real run must learn (CI's version of the slow reference trainings), and resume works."""

import pytest
import torch

from lighthead_edge.config import ModelConfig, TrainConfig
from lighthead_edge.evaluate import evaluate_model
from lighthead_edge.modeling.checkpoint import load_checkpoint
from lighthead_edge.modeling.detector import build_detector
from lighthead_edge.train import last_path, train


@pytest.fixture(scope="module")
def learn_set(tmp_path_factory):
    from lighthead_edge.data.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("learn"), 160, 40, size=(256, 256), seed=11, progress=False)


def test_small_training_clearly_beats_an_untrained_model(learn_set, tmp_path):
    # the model's default RPN settings (2000 proposals before NMS, 512 after)
    mcfg = ModelConfig(backbone="tiny", input_size=(256, 256), num_classes=4)
    torch.manual_seed(0)
    untrained = evaluate_model(build_detector(mcfg), learn_set["val"], progress=False)
    tcfg = TrainConfig(iters=300, batch_size=4, optimizer="adamw", lr=1e-3, warmup_iters=50, seed=0, eval_every=100)
    result = train(
        train_json=learn_set["train"],
        val_json=learn_set["val"],
        out=tmp_path / "m.pt",
        model_config=mcfg,
        train_config=tcfg,
        progress_bar=False,
    )
    trained = result.best_metrics
    print(
        f"untrained AP {untrained['AP']:.4f} AP50 {untrained['AP50']:.4f} -> trained AP {trained['AP']:.4f} "
        f"AP50 {trained['AP50']:.4f} in {result.seconds:.0f} s"
    )
    assert trained["AP50"] >= 0.08
    assert trained["AP"] >= untrained["AP"] + 0.03
    # the kept checkpoint is the one that was measured
    model, classes, payload = load_checkpoint(result.checkpoint)
    assert classes == ["circle", "square", "triangle", "star"]
    assert payload["meta"]["val"]["AP"] == pytest.approx(trained["AP"])
    again = evaluate_model(model, learn_set["val"], progress=False)
    assert again["AP"] == pytest.approx(trained["AP"], abs=1e-6)


def test_resume_continues_where_it_stopped(synth_set, tmp_path, tiny_config):
    out = tmp_path / "r.pt"
    kw = dict(
        train_json=synth_set["train"], val_json=synth_set["val"], out=out, model_config=tiny_config, progress_bar=False
    )
    first = train(train_config=TrainConfig(epochs=2, batch_size=8, optimizer="adamw", lr=1e-3, warmup_iters=2), **kw)
    assert [h["epoch"] for h in first.history] == [1, 2] and last_path(out).is_file()
    second = train(
        train_config=TrainConfig(epochs=3, batch_size=8, optimizer="adamw", lr=1e-3, warmup_iters=2), resume=True, **kw
    )
    assert [h["epoch"] for h in second.history] == [1, 2, 3]
    assert second.history[-1]["iteration"] == 3 * 3  # 24 images / batch 8 = 3 iterations an epoch


def test_fine_tune_from_a_checkpoint_keeps_classes(synth_set, tmp_path, tiny_config):
    base = train(
        train_json=synth_set["train"],
        val_json=None,
        out=tmp_path / "a.pt",
        model_config=tiny_config,
        train_config=TrainConfig(iters=2, batch_size=8, warmup_iters=1),
        progress_bar=False,
    )
    model, classes, _ = load_checkpoint(base.checkpoint)
    tuned = train(
        train_json=synth_set["train"],
        val_json=synth_set["val"],
        out=tmp_path / "b.pt",
        init_model=model,
        init_classes=classes,
        train_config=TrainConfig(iters=2, batch_size=8, optimizer="sgd", warmup_iters=1),
        progress_bar=False,
    )
    _, tuned_classes, payload = load_checkpoint(tuned.checkpoint)
    assert tuned_classes == classes
    # the record holds the settings as the run resolved them: sgd's rate, BN frozen when starting from a model
    settings = payload["train"]["settings"]
    assert (settings["lr"], settings["freeze_bn"], settings["frozen_stages"]) == (0.02, True, 0)
    assert payload["train"]["command"] is None
    assert load_checkpoint(base.checkpoint)[2]["train"]["settings"]["freeze_bn"] is False  # trained from scratch


def test_time_budget_ends_the_run_and_the_log_says_so(synth_set, tmp_path, tiny_config):
    """``max_minutes`` with far more epochs than fit (prune --finetune-minutes alone): the clock ends the run."""
    lines: list[str] = []
    result = train(
        train_json=synth_set["train"], val_json=None, out=tmp_path / "t.pt", model_config=tiny_config,
        train_config=TrainConfig(epochs=100_000, batch_size=8, warmup_iters=1, max_minutes=0.02),
        progress_bar=False, log=lines.append,
    )  # fmt: skip
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert 1 <= len(result.history) == len(epochs) < 100_000
    assert not any("/100000" in line for line in epochs)
    assert len(epochs) == 1 or "by time" in epochs[0]  # an estimate of the epochs the budget allows, until the end
    assert any("time budget of 0.02 min spent" in line for line in lines)
    assert epochs[-1].startswith(f"epoch {len(epochs)}/{len(epochs)} ")
