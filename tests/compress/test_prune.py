"""PS-aware channel pruning: shapes, exactness of what is removed, checkpoints, MAC target, distillation, CLI."""

from __future__ import annotations

import copy

import pytest
import torch

from lighthead_edge.cli import TIME_BOUND_EPOCHS, finetune_epochs_of
from lighthead_edge.compress import DistillConfig, RoIDistiller, prune_model, recalibrate_bn, remove_ps_groups
from lighthead_edge.compress.prune import conv_strides
from lighthead_edge.compress.surgery import prune_branch_mid, ps_channels
from lighthead_edge.config import ModelConfig
from lighthead_edge.errors import CheckpointError, ConfigError
from lighthead_edge.modeling.checkpoint import load_checkpoint, save_checkpoint
from lighthead_edge.modeling.detector import build_detector, freeze_batchnorm

CLASSES = ["circle", "square", "triangle", "star"]  # as in conftest.py


def _thin(model, image):
    with torch.no_grad():
        return model.thin_head(model.backbone(model.normalize(image)))


def test_pruned_model_runs_and_keeps_output_shapes(tiny_detector, image, rois):
    pruned, report = prune_model(tiny_detector, ratio=0.5)
    assert report.widths["alpha"] == [10, 5] and pruned.config.alpha == 5 and tiny_detector.config.alpha == 10
    assert report.widths["mid_a"] == [64, 32] and report.widths["backbone_out"] == [64, 32]
    thin = _thin(pruned, image)
    assert thin.shape == (1, 5 * 49, 8, 8)
    with torch.no_grad():
        logits, deltas = pruned.roi_heads(thin, rois)
        dets = pruned(image)[0]
    assert logits.shape == (12, 5) and deltas.shape == (12, 4)
    assert set(dets) == {"boxes", "scores", "labels"} and dets["boxes"].shape[1] == 4
    # and it still trains: losses are finite and reach the pruned layers
    pruned.train()
    target = {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([2])}
    sum(pruned(image, [target]).values()).backward()
    assert pruned.thin_head.row_a.weight.grad is not None and torch.isfinite(pruned.thin_head.row_a.weight.grad).all()


@pytest.mark.parametrize("groups", [[0], [3, 7], [1, 2, 5, 9]])
def test_each_removed_ps_group_shrinks_pooler_and_fc(tiny_detector, image, rois, groups):
    pruned = copy.deepcopy(tiny_detector)
    remove_ps_groups(pruned, groups)
    alpha = 10 - len(groups)
    pooled = pruned.roi_heads.pooler(_thin(pruned, image), rois)
    assert pooled.shape == (12, alpha, 7, 7)
    assert pruned.roi_heads.head.fc.in_features == alpha * 49 == pruned.config.thin_channels


def test_ps_group_removal_is_exact(tiny_detector, image, rois):
    """Kept thin channels are unchanged, and the head equals the original with the removed groups' fc columns
    zeroed: so exactly those groups (and their columns) went, not others."""
    removed = [2, 5, 6]
    kept = [g for g in range(10) if g not in removed]
    pruned = copy.deepcopy(tiny_detector)
    remove_ps_groups(pruned, removed)
    thin, thin_p = _thin(tiny_detector, image), _thin(pruned, image)
    assert torch.equal(thin[:, ps_channels(kept, 7)], thin_p)
    reference = copy.deepcopy(tiny_detector)
    with torch.no_grad():
        reference.roi_heads.head.fc.weight[:, ps_channels(removed, 7)] = 0
        expected, got = reference.roi_heads(thin, rois), pruned.roi_heads(thin_p, rois)
        unzeroed = tiny_detector.roi_heads(thin, rois)
    for e, g, u in zip(expected, got, unzeroed):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(g, u, rtol=1e-5, atol=1e-6)  # the check can tell groups apart


@pytest.mark.parametrize("branch,consumer", [("a", "row_a"), ("b", "col_b")])
def test_branch_mid_pruning_preserves_the_rest(tiny_detector, image, branch, consumer):
    """Dropping mid channels of one branch equals zeroing their columns in that branch's second conv."""
    keep = torch.arange(0, 64, 2)
    drop = torch.arange(1, 64, 2)
    pruned = copy.deepcopy(tiny_detector)
    prune_branch_mid(pruned.thin_head, branch, keep)
    reference = copy.deepcopy(tiny_detector)
    with torch.no_grad():
        getattr(reference.thin_head, consumer).weight[:, drop] = 0
    torch.testing.assert_close(_thin(pruned, image), _thin(reference, image), rtol=1e-5, atol=1e-5)
    other = {"a": "row_b", "b": "col_a"}[branch]
    assert torch.equal(getattr(pruned.thin_head, other).weight, getattr(tiny_detector.thin_head, other).weight)


def test_pruned_checkpoint_round_trip_with_weights_only(tmp_path, tiny_detector, image, rois):
    pruned, report = prune_model(tiny_detector, ratio=0.5, importance="bn")
    path = save_checkpoint(tmp_path / "p.pt", pruned, CLASSES, meta={"pruned": report.to_meta()})
    assert torch.load(path, weights_only=True)["meta"]["pruned"]["widths"]["alpha"] == [10, 5]
    loaded, classes, _ = load_checkpoint(path)
    assert classes == CLASSES and loaded.config == pruned.config
    assert loaded.backbone.out_channels == pruned.backbone.out_channels == 32
    with torch.no_grad():
        a, b = pruned(image)[0], loaded(image)[0]
        thin_a, thin_b = _thin(pruned, image), _thin(loaded, image)
        assert torch.equal(thin_a, thin_b)
        assert torch.equal(pruned.roi_heads(thin_a, rois)[0], loaded.roi_heads(thin_b, rois)[0])
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(a[key], b[key])
    # without the marker a mis-shaped state dict is still refused, as for any other architecture
    unmarked = save_checkpoint(tmp_path / "u.pt", pruned, CLASSES)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(unmarked)


def test_fc_hidden_pruning_is_exact_and_reloads(tmp_path, tiny_detector, image, rois):
    """Removing fc hidden units == zeroing their fc rows (ReLU(0) feeds nothing): same logits and deltas; the
    outputs' input columns follow, config.fc_dim follows, and the checkpoint reloads under weights_only."""
    from lighthead_edge.compress.prune import fc_hidden_importance
    from lighthead_edge.compress.surgery import prune_fc_hidden

    keep = torch.tensor([0, 3, 4, 9, 100, 2047])
    pruned, zeroed = copy.deepcopy(tiny_detector), copy.deepcopy(tiny_detector)
    prune_fc_hidden(pruned, keep)
    drop = torch.ones(2048, dtype=torch.bool)
    drop[keep] = False
    with torch.no_grad():
        zeroed.roi_heads.head.fc.weight[drop] = 0
        zeroed.roi_heads.head.fc.bias[drop] = 0
    head = pruned.roi_heads.head
    assert (head.fc.out_features, head.cls_score.in_features, head.bbox_pred.in_features) == (6, 6, 6)
    assert pruned.config.fc_dim == 6 and tiny_detector.config.fc_dim == 2048
    thin = _thin(tiny_detector, image)
    with torch.no_grad():
        for a, b in zip(pruned.roi_heads(thin, rois), zeroed.roi_heads(thin, rois), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert fc_hidden_importance(tiny_detector).shape == (2048,)
    both, report = prune_model(tiny_detector, ratio=0.5, fc_ratio=0.75)
    assert report.widths["fc_dim"] == [2048, 512] and both.config.fc_dim == 512
    assert report.after[-1].macs < report.before[-1].macs  # the R-CNN stage's MACs shrink with it
    path = save_checkpoint(tmp_path / "p.pt", both, CLASSES, meta={"pruned": report.to_meta()})
    loaded, _, _ = load_checkpoint(path)
    assert loaded.roi_heads.head.fc.weight.shape == (512, 5 * 49)
    with torch.no_grad():
        assert torch.equal(both(image)[0]["scores"], loaded(image)[0]["scores"])


def test_rpn_mid_pruning_is_exact_and_reloads(tmp_path, tiny_detector, image):
    """Removing RPN mid channels == zeroing their 3x3 filters and biases (ReLU(0) feeds nothing): the same objectness
    and deltas; both 1x1 outputs' inputs follow, config.rpn_channels follows, and the checkpoint reloads under
    weights_only with the same detections."""
    from lighthead_edge.compress.prune import rpn_mid_importance
    from lighthead_edge.compress.surgery import prune_rpn_mid

    n = tiny_detector.rpn.head.conv.out_channels
    keep = torch.tensor([0, 5, 17, 100, n - 1])
    pruned, zeroed = copy.deepcopy(tiny_detector), copy.deepcopy(tiny_detector)
    prune_rpn_mid(pruned, keep)
    drop = torch.ones(n, dtype=torch.bool)
    drop[keep] = False
    with torch.no_grad():
        zeroed.rpn.head.conv.weight[drop] = 0
        zeroed.rpn.head.conv.bias[drop] = 0
    head = pruned.rpn.head
    assert (head.conv.out_channels, head.cls_logits.in_channels, head.bbox_pred.in_channels) == (5, 5, 5)
    assert pruned.config.rpn_channels == 5 and tiny_detector.config.rpn_channels == n == 256
    with torch.no_grad():
        features = tiny_detector.backbone(tiny_detector.normalize(image))
        for a, b in zip(head(features), zeroed.rpn.head(features), strict=True):
            assert a.abs().max() > 0
            torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
    assert rpn_mid_importance(tiny_detector).shape == (n,)
    both, report = prune_model(tiny_detector, ratio=0.5, rpn_ratio=0.75)
    assert report.widths["rpn_mid"] == [256, 64] and both.config.rpn_channels == 64
    assert report.widths["backbone_out"] == [64, 32] and both.rpn.head.conv.in_channels == 32
    assert report.to_meta()["rpn_ratio"] == 0.75 and "rpn 0.75" in report.format()
    before, after = ({r.stage: r.macs for r in rows} for rows in (report.before, report.after))
    # half its input and a quarter of its mids: the 3x3 conv at 1/8 of its MACs, the 1x1 outputs at 1/4
    assert 0.125 * before["rpn"] < after["rpn"] < 0.15 * before["rpn"]
    path = save_checkpoint(tmp_path / "p.pt", both, CLASSES, meta={"pruned": report.to_meta()})
    loaded, _, _ = load_checkpoint(path)
    assert loaded.rpn.head.conv.weight.shape == (64, 32, 3, 3) and loaded.config.rpn_channels == 64
    with torch.no_grad():
        a, b = both(image)[0], loaded(image)[0]
    assert len(a["scores"]) > 0 and torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    with pytest.raises(ConfigError, match="rpn-ratio"):
        prune_model(tiny_detector, ratio=0.5, rpn_ratio=1.0)


def test_hires_ratio_prunes_the_stride_2_and_4_groups_at_their_own_ratio(tiny_detector, image, tmp_path):
    """The tiny backbone is two convs at each of strides 2, 4, 8, 16 (widths 16, 32, 48, 64): ``hires_ratio`` is the
    ratio of the first four, ``ratio`` of the rest (kept counts rounded up to 8)."""
    convs = lambda m: [m.backbone.features[i][0] for i in range(8)]  # noqa: E731
    strides = conv_strides(tiny_detector.backbone, torch.zeros(1, 3, 128, 128))
    assert [strides[c] for c in convs(tiny_detector)] == [2, 2, 4, 4, 8, 8, 16, 16]
    uniform, _ = prune_model(tiny_detector, ratio=0.25, thin_head=False)
    assert [c.out_channels for c in convs(uniform)] == [16, 16, 24, 24, 40, 40, 48, 48]
    pruned, report = prune_model(tiny_detector, ratio=0.25, hires_ratio=0.75, thin_head=False)
    assert [c.out_channels for c in convs(pruned)] == [8, 8, 8, 8, 40, 40, 48, 48]
    assert report.to_meta()["hires_ratio"] == 0.75 and "stride<=4 0.75" in report.format()
    backbone_macs = lambda r: next(x.macs for x in r if x.stage == "backbone")  # noqa: E731
    assert backbone_macs(report.after) < 0.6 * backbone_macs(prune_model(tiny_detector, ratio=0.25,
                                                                         thin_head=False)[1].after)  # fmt: skip
    spared, _ = prune_model(tiny_detector, ratio=0.5, hires_ratio=0.0, thin_head=False)  # deep only
    assert [c.out_channels for c in convs(spared)] == [16, 16, 32, 32, 24, 24, 32, 32]
    path = save_checkpoint(tmp_path / "h.pt", pruned, CLASSES, meta={"pruned": report.to_meta()})
    loaded, _, _ = load_checkpoint(path)
    with torch.no_grad():
        a, b = pruned(image)[0], loaded(image)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    with pytest.raises(ConfigError, match="hires-ratio"):
        prune_model(tiny_detector, ratio=0.5, hires_ratio=1.0)


def test_thin_head_ratio_is_its_own(tiny_detector):
    pruned, report = prune_model(tiny_detector, ratio=0.25, thin_ratio=0.5)
    assert report.widths["backbone_out"] == [64, 48]
    assert report.widths["mid_a"] == [64, 32] and report.widths["alpha"] == [10, 5]
    assert report.to_meta()["thin_ratio"] == 0.5 and "thin head 0.5" in report.format()
    only_head, report = prune_model(tiny_detector, ratio=0.0, thin_ratio=0.3)
    assert report.widths["backbone_out"] == [64, 64] and report.widths["alpha"] == [10, 7]
    with pytest.raises(ConfigError, match="thin-ratio"):
        prune_model(tiny_detector, ratio=0.5, thin_ratio=1.0)


def test_mobilenet_macs_halve_at_ratio_half():
    torch.manual_seed(0)
    model = build_detector(ModelConfig()).eval()
    pruned, report = prune_model(model, ratio=0.5)
    assert report.macs_reduction >= 0.5
    before = {r.stage: r.macs for r in report.before}
    after = {r.stage: r.macs for r in report.after}
    assert after["backbone"] < 0.5 * before["backbone"] and after["thin_map"] <= 0.5 * before["thin_map"]
    assert "thin_map" in report.format() and report.to_meta()["macs_reduction"] == report.macs_reduction


def test_bad_settings_are_config_errors(tiny_detector):
    with pytest.raises(ConfigError, match="ratio"):
        prune_model(tiny_detector, ratio=1.0)
    with pytest.raises(ConfigError, match="importance"):
        prune_model(tiny_detector, ratio=0.5, importance="taylor")
    with pytest.raises(ConfigError, match="one kept"):
        remove_ps_groups(copy.deepcopy(tiny_detector), list(range(10)))


def test_distillation_loss_is_zero_for_the_teacher_and_trains_the_student(tiny_detector, image):
    target = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([2])}]
    same = copy.deepcopy(tiny_detector).train()
    freeze_batchnorm(same)  # as train() does when fine-tuning: BN statistics are the teacher's
    distiller = RoIDistiller(copy.deepcopy(tiny_detector), same, DistillConfig(rois_per_image=16))
    same(image, target)
    losses = distiller(same, image, target)
    distiller.close()
    assert all(float(v.detach()) < 1e-6 for v in losses.values()), losses
    student, _ = prune_model(tiny_detector, ratio=0.5)
    student.train()
    distiller = RoIDistiller(copy.deepcopy(tiny_detector), student)
    student(image, target)
    losses = distiller(student, image, target)
    distiller.close()
    sum(losses.values()).backward()
    assert float(losses["loss_distill_cls"].detach()) > 0 and student.thin_head.col_a.weight.grad is not None
    assert not student.thin_head._forward_hooks


def test_bn_recalibration_reestimates_backbone_statistics(tiny_detector, synth_set):
    pruned, _ = prune_model(tiny_detector, ratio=0.5)
    bn = pruned.backbone.features[0][1]
    old = bn.running_mean.clone()
    assert recalibrate_bn(pruned, synth_set["train"], batches=2, batch_size=2) == 2
    assert not torch.equal(old, bn.running_mean) and bn.momentum == 0.1 and not pruned.training


def test_cli_prune_with_two_finetune_iterations(cli, tmp_path, tiny_checkpoint, synth_set):
    out = tmp_path / "pruned.pt"
    code, stdout, err = cli("prune", tiny_checkpoint, "--ratio", "0.5", "--data", synth_set["train"],
        "--val", synth_set["val"], "--finetune-iters", "2", "--batch-size", "2", "--threads", "1", "--distill",
        "--fc-ratio", "0.5", "--finetune-minutes", "5", "--out", out,
    )  # fmt: skip
    assert code in (0, None), err
    assert "thin_map" in stdout and "val: original AP" in stdout and "pruned + fine-tuned AP" in stdout
    assert "fc_dim 2048->1024" in stdout
    model, classes, payload = load_checkpoint(out)
    assert classes == CLASSES and model.config.alpha == 5 and model.config.fc_dim == 1024
    assert payload["meta"]["pruned"]["distill"] and payload["meta"]["pruned"]["macs_reduction"] >= 0.5
    # the resumable state of the fine-tuning run says it is pruned too, so it reloads with the pruned shapes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.last.pt", "pruned.pt"]
    assert load_checkpoint(tmp_path / "pruned.last.pt")[0].config.alpha == 5


def test_cli_prune_refuses_epochs_and_iterations(cli, tmp_path, tiny_checkpoint, synth_set):
    code, _, err = cli("prune", tiny_checkpoint, "--data", synth_set["train"], "--finetune-epochs", "1",
        "--finetune-iters", "2", "--out", tmp_path / "p.pt",
    )  # fmt: skip
    assert code == ConfigError.exit_code and err.strip().startswith("error: give --finetune-epochs")


@pytest.mark.parametrize(
    ("epochs", "iters", "minutes", "expected"),
    [(None, None, None, 3), (None, None, 30.0, TIME_BOUND_EPOCHS), (5, None, 30.0, 5), (None, 40, 30.0, 3),
     (0, None, 30.0, 0)],
)  # fmt: skip
def test_finetune_minutes_alone_bound_fine_tuning_by_time(epochs, iters, minutes, expected):
    """--finetune-minutes alone must not be capped by the 3-epoch default (57 iterations on a 19-image set)."""
    assert finetune_epochs_of(epochs, iters, minutes) == expected


def test_exported_pruned_model_keeps_shapes_and_parity(tmp_path, tiny_detector):
    """A pruned checkpoint exports end to end (ONNX, through load_checkpoint), with the shrunk fc, and gives the
    eager graph's detections in onnxruntime. Detections are compared as sets: random weights give tied scores,
    whose order TopK may break differently."""
    ort = pytest.importorskip("onnxruntime")
    from lighthead_edge.export.graph import build_export_model, example_input
    from lighthead_edge.export.onnx import export_onnx

    pruned, report = prune_model(tiny_detector, ratio=0.5, fc_ratio=0.5)
    path = save_checkpoint(tmp_path / "p.pt", pruned, CLASSES, meta={"pruned": report.to_meta()})
    graph = build_export_model(load_checkpoint(path)[0])
    onnx_model = export_onnx(graph, tmp_path / "p.onnx")
    weights = {t.name: list(t.dims) for t in onnx_model.graph.initializer}
    assert weights["roi_heads.head.fc.weight"] == [1024, 5 * 49]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tmp_path / "p.onnx"), options, providers=["CPUExecutionProvider"])
    image = example_input(graph)
    with torch.no_grad():
        expected = [t.numpy()[0] for t in graph(image)]
    got = [a[0] for a in session.run(None, {session.get_inputs()[0].name: image.numpy()})]
    n = int(expected[3])
    assert n == int(got[3]) and n > 0
    rows, o_rows = _detection_rows(*expected[:3], n), _detection_rows(*got[:3], n)
    nearest = (rows[:, None] - o_rows[None]).abs().amax(dim=2).amin(dim=1)
    assert float(nearest.max()) < 1e-4


def _detection_rows(boxes, scores, labels, n: int) -> torch.Tensor:
    """Tensor[n, 6]: (box, score, label) of the first n detections of an exported graph's outputs."""
    columns = [boxes[:n], scores[:n, None], labels[:n, None]]
    return torch.cat([torch.as_tensor(c).double() for c in columns], dim=1)


def test_pruning_a_pruned_checkpoint_records_the_cumulative_reduction(tmp_path, tiny_checkpoint, synth_set):
    """Iterative pruning: the second checkpoint keeps the first's record and its MACs cut against the unpruned model
    (which is larger than either step's own), and still reloads under weights_only."""
    from lighthead_edge.compress.pipeline import PruneSettings, prune_checkpoint
    from lighthead_edge.config import TrainConfig

    no_tuning = TrainConfig(epochs=0, threads=1)
    first = prune_checkpoint(tiny_checkpoint, tmp_path / "p1.pt", train_json=synth_set["train"],
                             settings=PruneSettings(ratio=0.25, bn_batches=1), train_config=no_tuning,
                             progress_bar=False, log=lambda m: None)  # fmt: skip
    second = prune_checkpoint(tmp_path / "p1.pt", tmp_path / "p2.pt", train_json=synth_set["train"],
                              settings=PruneSettings(ratio=0.25, fc_ratio=0.5, bn_batches=1),
                              train_config=no_tuning, progress_bar=False, log=lambda m: None)  # fmt: skip
    meta = torch.load(tmp_path / "p2.pt", weights_only=True)["meta"]["pruned"]
    assert meta["previous"]["widths"]["alpha"] == [10, 8] and meta["widths"]["alpha"] == [8, 6]
    cumulative = meta["cumulative_macs_reduction"]
    assert cumulative > max(first.report.macs_reduction, second.report.macs_reduction)
    assert 1 - cumulative == pytest.approx((1 - first.report.macs_reduction) * (1 - second.report.macs_reduction))
    assert "cumulative_macs_reduction" not in torch.load(tmp_path / "p1.pt", weights_only=True)["meta"]["pruned"]
    assert load_checkpoint(tmp_path / "p2.pt")[0].config.alpha == 6


def test_cli_train_distills_a_pruned_model_from_its_original(cli, tmp_path, tiny_checkpoint, synth_set, monkeypatch):
    """``train --init pruned.pt --distill-from original.pt``: the fine-tuning steps carry the distillation loss, and the
    result keeps the pruned shapes."""
    pruned = tmp_path / "pruned.pt"
    # magnitude cuts: a reconstructed student of this random-weight teacher matches its near-uniform logits so closely
    # that the KL term can be exactly 0, which is right but would not show the loss is wired in
    code, _, err = cli("prune", tiny_checkpoint, "--ratio", "0.5", "--data", synth_set["train"],
                       "--finetune-epochs", "0", "--no-reconstruct", "--out", pruned)  # fmt: skip
    assert code in (0, None), err
    calls = []
    original_call = RoIDistiller.__call__

    def spy(self, model, images, targets):
        losses = original_call(self, model, images, targets)
        calls.append({k: float(v.detach()) for k, v in losses.items()})
        return losses

    monkeypatch.setattr(RoIDistiller, "__call__", spy)
    out = tmp_path / "tuned.pt"
    code, _, err = cli("train", "--data", synth_set["train"], "--init", pruned, "--distill-from", tiny_checkpoint,
                       "--iters", "2", "--batch-size", "2", "--threads", "1", "--out", out)  # fmt: skip
    assert code in (0, None), err
    assert len(calls) == 2 and all(c["loss_distill_cls"] > 0 and c["loss_distill_box"] >= 0 for c in calls)
    model, classes, payload = load_checkpoint(out)
    assert classes == CLASSES and model.config.alpha == 5 and "pruned" in payload["meta"]


def test_cli_train_distill_needs_init_and_the_same_classes(cli, tmp_path, tiny_detector, tiny_checkpoint, synth_set):
    code, _, err = cli("train", "--data", synth_set["train"], "--distill-from", tiny_checkpoint, "--out",
                       tmp_path / "m.pt")  # fmt: skip
    assert code == ConfigError.exit_code
    assert err.strip() == "error: --distill-from needs --init: it distils into a model being fine-tuned"
    other = save_checkpoint(tmp_path / "other.pt", tiny_detector, ["a", "b", "c", "d"])
    code, _, err = cli("train", "--data", synth_set["train"], "--init", tiny_checkpoint, "--distill-from", other,
                       "--out", tmp_path / "m.pt")  # fmt: skip
    assert code == ConfigError.exit_code and "has classes ['a', 'b', 'c', 'd'], --init has" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("ratio", [0.05, 0.2])
def test_backbone_kept_widths_round_up(ratio):
    """Every backbone conv keeps at least (1 - ratio) of its channels, rounded UP to a multiple of 8 (Torch-Pruning's
    own round_to rounds down, which at ratio 0.05 halves MobileNetV2's 16-channel bottleneck)."""
    import math

    from torch import nn

    model = build_detector(ModelConfig(num_classes=2, input_size=(128, 128))).eval()
    pruned, _ = prune_model(model, ratio=ratio, thin_head=False)
    convs = [(m.out_channels, p.out_channels) for m, p in zip(model.backbone.modules(), pruned.backbone.modules())
             if isinstance(m, nn.Conv2d)]  # fmt: skip
    assert all(kept == min(n, math.ceil((n - int(n * ratio)) / 8) * 8) for n, kept in convs), convs
    assert any(kept < n for n, kept in convs)


def test_compress_package_is_lazy_and_prune_and_reconstruct_share_surgery_without_a_cycle():
    import ast
    import json
    import subprocess
    import sys
    from pathlib import Path

    import lighthead_edge.compress as compress

    code = "import json, sys, lighthead_edge.compress; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "torch" not in loaded and "nncf" not in loaded
    assert all(getattr(compress, name) is not None for name in compress.__all__)  # every lazy name resolves
    with pytest.raises(AttributeError):
        compress.no_such_name  # noqa: B018
    root = Path(compress.__file__).parent

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert "lighthead_edge.compress.prune" not in imports("reconstruct")
    assert "lighthead_edge.compress.surgery" in imports("reconstruct") & imports("prune")
