import math

import pytest
import torch

from lighthead_edge.config import LossSettings, ModelConfig
from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.backbones import build_backbone
from lighthead_edge.modeling.detector import build_detector
from lighthead_edge.modeling.rpn import make_anchors
from lighthead_edge.modeling.thin_head import LargeSeparableConv


def test_config_defaults_follow_the_paper():
    c = ModelConfig()
    assert (c.kernel_size, c.alpha, c.pool_size, c.thin_channels, c.fc_dim) == (15, 10, 7, 490, 2048)
    assert c.head_mid_channels == 64 and ModelConfig(head_size="L").head_mid_channels == 256
    assert c.num_anchors == 15 and c.sampling_ratio == 2 and c.nms_thresh == 0.5 and c.rpn_nms_thresh == 0.7


@pytest.mark.parametrize("bad", [{"num_classes": 0}, {"head_size": "M"}, {"input_size": (100, 128)}])
def test_config_rejects_bad_settings(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="available: mobilenet_v2, tiny"):
        build_backbone("resnet9000")


def test_large_separable_conv_structure():
    head = LargeSeparableConv(96, 64, 490, 15)
    assert head.col_a.kernel_size == (15, 1) and head.row_a.kernel_size == (1, 15)
    assert head.row_b.kernel_size == (1, 15) and head.col_b.kernel_size == (15, 1)
    assert head.col_a.out_channels == head.row_b.out_channels == 64
    out = head(torch.randn(2, 96, 9, 11))
    assert out.shape == (2, 490, 9, 11) and (out >= 0).all()
    # the two branches are summed: zeroing branch B leaves exactly branch A
    x = torch.randn(1, 96, 5, 5)
    with torch.no_grad():
        head.col_b.weight.zero_()
        head.col_b.bias.zero_()
        torch.testing.assert_close(head(x), torch.relu(head.row_a(head.col_a(x))))


def test_anchors_layout_and_sizes():
    anchors = make_anchors(2, 3, 16, (2.0, 4.0), (0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 3 * 6, 4)
    first = anchors[:6]  # cell (0, 0), centre (8, 8)
    torch.testing.assert_close((first[:, :2] + first[:, 2:]) / 2, torch.full((6, 2), 8.0))
    areas = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])
    torch.testing.assert_close(areas, torch.tensor([32.0**2, 64.0**2] * 3))
    ratio = (first[0, 3] - first[0, 1]) / (first[0, 2] - first[0, 0])
    assert ratio.item() == pytest.approx(0.5)
    assert torch.allclose((anchors[6:12, :2] + anchors[6:12, 2:]) / 2, torch.tensor([24.0, 8.0]))


def test_eval_forward_shapes(tiny_detector, tiny_config):
    images = torch.rand(2, 3, *tiny_config.input_size, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        dets = tiny_detector(images)
    assert len(dets) == 2
    for d in dets:
        n = d["boxes"].shape[0]
        # an untrained head scores every class near 1/5, far above score_thresh (0.05): detections must come out
        assert 0 < n <= tiny_config.detections_per_img
        assert d["boxes"].shape == (n, 4) and d["scores"].shape == (n,) and d["labels"].shape == (n,)
        assert d["labels"].min() >= 1 and d["labels"].max() <= 4
        assert (d["boxes"] >= 0).all() and (d["boxes"][:, 2:] <= 128).all()
        assert (d["scores"] > tiny_config.score_thresh).all()


def test_rcnn_fc_input_is_alpha_p_p(tiny_detector):
    assert tiny_detector.roi_heads.head.fc.in_features == 490
    assert tiny_detector.roi_heads.pooler.output_size == (7, 7)
    assert tiny_detector.roi_heads.pooler.spatial_scale == 1 / 16


def test_training_losses_and_gradients(tiny_config):
    torch.manual_seed(1)
    model = build_detector(tiny_config).train()
    images = torch.rand(2, 3, 128, 128) * 255
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 60, 70], [70, 20, 120, 100]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},  # an image with no objects
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_rcnn_cls", "loss_rcnn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    # untrained classifier over 5 classes starts near log(5)
    assert losses["loss_rcnn_cls"].item() == pytest.approx(math.log(5), abs=0.3)
    sum(losses.values()).backward()
    for p in (
        model.thin_head.col_a.weight,
        model.roi_heads.head.fc.weight,
        model.rpn.head.conv.weight,
        model.backbone.features[0][0].weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_loss_settings_set_the_sampled_rois(tiny_config):
    """``LossSettings`` reach the sampling: the R-CNN head trains on at most ``roi_batch_size`` RoIs per image, with
    at most ``roi_positive_fraction`` of them foreground."""
    torch.manual_seed(0)
    model = build_detector(tiny_config, losses=LossSettings(roi_batch_size=16, roi_positive_fraction=0.5)).train()
    shifts = torch.arange(20.0)[:, None] * 0.1
    near, far = torch.tensor([[10.0, 10, 60, 60]]) + shifts, torch.tensor([[70.0, 70, 120, 120]]) + shifts
    proposals = [torch.cat([near, far])] * 2  # 20 foreground and 20 background candidates (+ the gt) per image
    targets = [{"boxes": torch.tensor([[10.0, 10, 60, 60]]), "labels": torch.tensor([2])}] * 2
    rois, labels, _ = model._sample_rois(proposals, targets)
    assert rois.shape[0] == 2 * 16 and int((labels > 0).sum()) == 2 * 8
    model.use_losses(LossSettings(roi_batch_size=6, roi_positive_fraction=0.5))
    rois, labels, _ = model._sample_rois(proposals, targets)
    assert rois.shape[0] == 2 * 6 and int((labels > 0).sum()) == 2 * 3
    assert not hasattr(model, "train_config")


def test_a_few_steps_reduce_the_loss(tiny_config):
    torch.manual_seed(0)
    model = build_detector(tiny_config).train()
    images = torch.rand(2, 3, 128, 128) * 255
    targets = [{"boxes": torch.tensor([[16.0, 16, 80, 80]]), "labels": torch.tensor([2])}] * 2
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        torch.manual_seed(0)  # same sampled anchors/RoIs each step: the loss then must fall
        loss = sum(model(images, targets).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_pretrained_mobilenet_keys_follow_torchvision():
    backbone = build_backbone("mobilenet_v2")
    keys = set(backbone.state_dict())
    # torchvision MobileNetV2 names, features[0:14]
    assert {
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.0.0.weight",
        "features.13.conv.3.running_var",
    } <= keys
    assert not any(k.startswith("features.14") for k in keys)
    assert backbone.out_channels == 96
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 96, 4, 4)


def test_build_detector_with_pretrained_file(tmp_path):
    donor = build_backbone("mobilenet_v2")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in donor.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(1000, 1280)  # an ImageNet file carries more than we use
    path = tmp_path / "mbv2.pth"
    torch.save(state, path)
    model = build_detector(ModelConfig(input_size=(64, 64)), pretrained_backbone=path)
    torch.testing.assert_close(
        model.backbone.state_dict()["features.3.conv.1.0.weight"], state["features.3.conv.1.0.weight"]
    )
