import pytest
import torch

from lighthead_edge.ops.boxes import BoxCoder, box_iou
from lighthead_edge.ops.nms import batched_nms, nms


def greedy(boxes, scores, thr):
    """The greedy definition, one box at a time against the kept ones (a stable order: ties by index)."""
    keep = []
    for i in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if not keep or not (box_iou(boxes[i : i + 1], boxes[keep]) > thr).any():
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


def clustered(seed, n):
    """n boxes around a few centres, with tied scores: long suppression chains that cross NMS's blocks."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(6, 2, generator=g) * 200
    xy = centres[torch.randint(0, 6, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 12
    wh = torch.rand(n, 2, generator=g) * 50 + 5
    scores = torch.randint(0, 40, (n,), generator=g).float() / 40  # many equal scores
    return torch.cat([xy, xy + wh], 1), scores


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_nms_across_blocks_and_max_keep(seed, thr):
    boxes, scores = clustered(seed, 700)  # more than 5 blocks
    expected = greedy(boxes, scores, thr)
    assert len(expected) > 128  # kept boxes span blocks, so earlier blocks' boxes suppress later ones
    assert nms(boxes, scores, thr).tolist() == expected
    for k in (0, 1, 100, 128, 129, len(expected), len(expected) + 50):
        assert nms(boxes, scores, thr, max_keep=k).tolist() == expected[:k]


def test_a_negative_max_keep_is_refused():
    boxes, scores = clustered(0, 10)
    with pytest.raises(ValueError, match="max_keep must be >= 0"):
        nms(boxes, scores, 0.5, max_keep=-1)


def test_batched_nms_max_keep():
    boxes, scores = clustered(7, 400)
    labels = torch.arange(400) % 3
    full = batched_nms(boxes, scores, labels, 0.5)
    assert batched_nms(boxes, scores, labels, 0.5, max_keep=50).tolist() == full[:50].tolist()
    # per class, what was kept is that class's own greedy NMS
    for c in range(3):
        ids = torch.nonzero(labels == c).flatten()
        assert sorted(full[labels[full] == c].tolist()) == sorted(ids[greedy(boxes[ids], scores[ids], 0.5)].tolist())


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
