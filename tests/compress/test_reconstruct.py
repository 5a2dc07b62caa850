"""Pruning by least-squares reconstruction: exactness at full rank, better than selection at low rank, refitted fc
closer to the original than sliced columns, and the prune command end to end."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from lighthead_edge.compress import prune_model, remove_ps_groups
from lighthead_edge.compress.finetune import calibration_batches
from lighthead_edge.compress.prune import mid_importance
from lighthead_edge.compress.reconstruct import lowrank_mid, reconstruct_head, reconstruct_rpn
from lighthead_edge.compress.surgery import prune_branch_mid
from lighthead_edge.modeling.checkpoint import load_checkpoint


def _branch(seed: int, c_in: int = 8, c_mid: int = 16, c_out: int = 24, k: int = 5):
    torch.manual_seed(seed)
    first = nn.Conv2d(c_in, c_mid, (k, 1), padding=(k // 2, 0))
    second = nn.Conv2d(c_mid, c_out, (1, k), padding=(0, k // 2))
    # correlated inputs: the mids then live near a low-dimensional subspace, as in a trained thin head
    x = torch.einsum("bshw,sc->bchw", torch.randn(6, 3, 12, 12), torch.randn(3, c_in)) + 0.1 * torch.randn(
        6, c_in, 12, 12
    )
    return first, second, x


def _moment(first: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        m = first(x).permute(0, 2, 3, 1).reshape(-1, first.out_channels).double()
    return m.T @ m / m.shape[0]


def _rel_error(reference: torch.Tensor, got: torch.Tensor) -> float:
    return float((reference - got).norm() / reference.norm())


def test_full_rank_factorisation_is_exact():
    first, second, x = _branch(0)
    new_first, new_second, error = lowrank_mid(first, second, _moment(first, x), rank=16)
    with torch.no_grad():
        reference, got = second(first(x)), new_second(new_first(x))
    assert error < 1e-6 and _rel_error(reference, got) < 1e-5
    assert new_first.weight.shape == first.weight.shape and new_second.weight.shape == second.weight.shape


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_rank_factorisation_beats_keeping_the_best_mids(seed):
    """At 4 of 16 mids the factorisation's output error is clearly below that of keeping the 4 mids with the largest
    path norm (the magnitude criterion of ``prune_model``)."""
    first, second, x = _branch(seed)
    new_first, new_second, _ = lowrank_mid(first, second, _moment(first, x), rank=4)
    head = nn.Module()
    head.col_a, head.row_a = copy.deepcopy(first), copy.deepcopy(second)
    prune_branch_mid(head, "a", mid_importance(first, second).topk(4).indices.sort().values)
    with torch.no_grad():
        reference = second(first(x))
        factorised = _rel_error(reference, new_second(new_first(x)))
        selected = _rel_error(reference, head.row_a(head.col_a(x)))
    assert new_first.out_channels == 4 and new_second.in_channels == 4
    assert factorised < 0.8 * selected, (factorised, selected)


def _fc_error(model, teacher, images, targets) -> float:
    """Relative error of ``model``'s fc pre-activation against the teacher's, on the teacher's proposals."""
    from lighthead_edge.compress.distill import teacher_rois

    with torch.no_grad():
        t_feat = teacher.backbone(teacher.normalize(images))
        rois = teacher_rois(teacher, t_feat, images, targets, 32)
        expected = teacher.roi_heads.head.fc(teacher.roi_heads.pooler(teacher.thin_head(t_feat), rois).flatten(1))
        s_thin = model.thin_head(model.backbone(model.normalize(images)))
        got = model.roi_heads.head.fc(model.roi_heads.pooler(s_thin, rois).flatten(1))
    return _rel_error(expected, got)


def test_refitted_fc_is_closer_to_the_original_than_sliced_columns(tiny_detector, synth_set):
    batches = calibration_batches(synth_set["train"], tiny_detector.config.input_size, batch_size=4)
    teacher = copy.deepcopy(tiny_detector)
    refitted = copy.deepcopy(tiny_detector)
    removed, report = reconstruct_head(refitted, teacher, batches, mid_keep=None, groups_remove=5, fc_keep=None)
    sliced = copy.deepcopy(tiny_detector)
    remove_ps_groups(sliced, removed)
    assert len(removed) == 5 and refitted.config.alpha == 5 and refitted.roi_heads.head.fc.in_features == 5 * 49
    assert report.rois > 100 and 0 < report.fc_error < 1
    images, targets = next(iter(calibration_batches(synth_set["val"], tiny_detector.config.input_size, 4)()))
    refit_error, slice_error = (
        _fc_error(refitted, teacher, images, targets),
        _fc_error(sliced, teacher, images, targets),
    )
    assert refit_error < 0.8 * slice_error, (refit_error, slice_error)


def _rpn_error(model, teacher, images) -> float:
    """Relative error of ``model``'s RPN objectness and deltas against the teacher's."""
    with torch.no_grad():
        expected = teacher.rpn.head(teacher.backbone(teacher.normalize(images)))
        got = model.rpn.head(model.backbone(model.normalize(images)))
    return _rel_error(torch.cat([expected[0].flatten(), expected[1].flatten()]),
                      torch.cat([got[0].flatten(), got[1].flatten()]))  # fmt: skip


def test_refitted_rpn_is_closer_to_the_original_than_sliced_channels(synth_set):
    """On the trained tiny checkpoint, with a quarter of the RPN's mids kept: the least-squares refit of its two 1x1
    outputs reproduces the original's objectness and deltas on held-out images far better than keeping the
    highest path-norm channels as they are."""
    from exported import CHECKPOINT

    teacher, _, _ = load_checkpoint(CHECKPOINT)
    batches = calibration_batches(synth_set["train"], teacher.config.input_size, batch_size=4)
    width = teacher.rpn.head.conv.out_channels
    refitted = copy.deepcopy(teacher)
    residual = reconstruct_rpn(refitted, teacher, lambda: itertools.islice(batches(), 4), keep=width // 4)
    sliced, _ = prune_model(teacher, ratio=0.0, thin_head=False, rpn_ratio=0.75)
    assert refitted.rpn.head.conv.out_channels == sliced.rpn.head.conv.out_channels == width // 4 >= 8
    assert refitted.config.rpn_channels == width // 4 and teacher.config.rpn_channels == width
    images, _ = next(iter(calibration_batches(synth_set["val"], teacher.config.input_size, 8)()))
    refit_error, slice_error = _rpn_error(refitted, teacher, images), _rpn_error(sliced, teacher, images)
    assert 0 < residual < 0.5 and refit_error < 0.5 * slice_error, (residual, refit_error, slice_error)


def test_prune_model_with_calibration_refits_every_cut(tiny_detector, synth_set, image, rois):
    batches = calibration_batches(synth_set["train"], tiny_detector.config.input_size, batch_size=4)
    pruned, report = prune_model(tiny_detector, ratio=0.25, thin_ratio=0.75, fc_ratio=0.5, rpn_ratio=0.5,
                                 calibration=lambda: itertools.islice(batches(), 4), bn_batches=2)  # fmt: skip
    assert report.widths["mid_a"] == [64, 16] and report.widths["alpha"] == [10, 3]
    assert report.widths["rpn_mid"] == [256, 128] and 0 < report.to_meta()["reconstruction"]["rpn_error"] < 1
    assert report.widths["fc_dim"] == [2048, 1024] and report.widths["backbone_out"] == [64, 48]
    recon = report.to_meta()["reconstruction"]
    assert set(recon["mid_error"]) == {"a", "b"} and recon["bn_batches"] == 2 and recon["rois"] > 0
    assert 0 <= recon["out_error"] < 1 and len(report.removed_groups) == 7
    with torch.no_grad():
        thin = pruned.thin_head(pruned.backbone(pruned.normalize(image)))
        logits, deltas = pruned.roi_heads(thin, rois)
    assert thin.shape == (1, 3 * 49, 8, 8) and logits.shape == (12, 5) and torch.isfinite(deltas).all()
    assert tiny_detector.config.alpha == 10 and not tiny_detector.training  # the original is untouched


def test_cli_prune_reconstruct(cli, tmp_path, tiny_checkpoint, synth_set):
    out = tmp_path / "pruned.pt"
    code, stdout, err = cli("prune", tiny_checkpoint, "--ratio", "0.25", "--thin-ratio", "0.75", "--fc-ratio", "0.5",
                            "--reconstruct", "--calib-batches", "3", "--data", synth_set["train"],
                            "--finetune-epochs", "0", "--batch-size", "2", "--out", out)  # fmt: skip
    assert code in (0, None), err
    assert "reconstruction residuals: C_mid a " in err and "alpha 10->3" in stdout
    model, _, payload = load_checkpoint(out)
    meta = payload["meta"]["pruned"]
    assert model.config.alpha == 3 and meta["reconstruction"]["rois"] > 0 and meta["bn_batches"] >= 1


def test_cli_prune_refuses_no_calibration_batches(cli, tmp_path, tiny_checkpoint, synth_set):
    out = tmp_path / "pruned.pt"
    code, _, err = cli("prune", tiny_checkpoint, "--calib-batches", "0", "--data", synth_set["train"],
                       "--finetune-epochs", "0", "--out", out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err  # refused by the option's range, in one line
    assert err.startswith("error: Invalid value for '--calib-batches': 0 is not in the range x>=1")
    assert not out.exists()


def test_reconstruction_without_images_is_a_clear_error(tiny_detector):
    from lighthead_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="calibration batches are empty"):
        prune_model(tiny_detector, ratio=0.0, thin_ratio=0.5, calibration=lambda: iter([]), bn_batches=0)
