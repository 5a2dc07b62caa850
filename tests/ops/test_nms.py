import pytest
import torch

from lighthead_edge.ops.boxes import BoxCoder, box_iou
from lighthead_edge.ops.nms import batched_nms, nms


def greedy(boxes, scores, thr):
    order = scores.argsort(descending=True).tolist()
    keep = []
    for i in order:
        if all(box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_equals_greedy(seed, thr):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(150, 2, generator=g) * 100
    wh = torch.rand(150, 2, generator=g) * 40 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(150, generator=g)
    assert nms(boxes, scores, thr).tolist() == greedy(boxes, scores, thr)


def test_nms_chain_suppression():
    # a suppresses b, b would suppress c; since b is gone, c survives
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.4).tolist() == [0, 2]


def test_batched_nms_keeps_other_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 2, 1]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_box_coder_round_trip():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    props = torch.tensor([[10.0, 20, 50, 80], [0, 0, 5, 5]])
    gt = torch.tensor([[12.0, 18, 60, 90], [1, 1, 4, 6]])
    torch.testing.assert_close(coder.decode(coder.encode(gt, props), props), gt)
