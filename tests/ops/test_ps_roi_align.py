"""The pure-torch PS-RoIAlign against hand-derived values and a scalar transcription of torchvision's CPU kernel."""

import math

import pytest
import torch

from lighthead_edge.ops.ps_roi_align import PSRoIAlign, ps_roi_align


def _bilinear(plane: torch.Tensor, y: float, x: float) -> float:
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_lo, x_lo = int(y), int(x)
    if y_lo >= h - 1:
        y_lo = y_hi = h - 1
        y = float(y_lo)
    else:
        y_hi = y_lo + 1
    if x_lo >= w - 1:
        x_lo = x_hi = w - 1
        x = float(x_lo)
    else:
        x_hi = x_lo + 1
    ly, lx = y - y_lo, x - x_lo
    hy, hx = 1 - ly, 1 - lx
    p = plane.tolist()
    return hy * hx * p[y_lo][x_lo] + hy * lx * p[y_lo][x_hi] + ly * hx * p[y_hi][x_lo] + ly * lx * p[y_hi][x_hi]


def kernel_loop(inp, rois, ph, pw, scale, sr):
    """torchvision's ps_roi_align_forward_kernel_impl, one output element at a time."""
    k = rois.shape[0]
    c_out = inp.shape[1] // (ph * pw)
    out = torch.zeros(k, c_out, ph, pw, dtype=torch.float64)
    for n in range(k):
        b, x1, y1, x2, y2 = rois[n].tolist()
        sw, sh, ew, eh = x1 * scale - 0.5, y1 * scale - 0.5, x2 * scale - 0.5, y2 * scale - 0.5
        rw, rh = ew - sw, eh - sh
        bh, bw = rh / ph, rw / pw
        gh = sr if sr > 0 else math.ceil(rh / ph)
        gw = sr if sr > 0 else math.ceil(rw / pw)
        for c in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    plane = inp[int(b), (c * ph + i) * pw + j].double()
                    total = 0.0
                    for iy in range(gh):
                        y = sh + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = sw + j * bw + (ix + 0.5) * bw / gw
                            total += _bilinear(plane, y, x)
                    out[n, c, i, j] = total / (gh * gw)
    return out


def test_hand_derived_single_bin():
    # 1 group, 1x1 output, a 4x4 ramp map: value = 10 * y + x, bilinear is exact on a linear map
    ramp = (torch.arange(4.0)[:, None] * 10 + torch.arange(4.0)[None, :])[None, None]
    # box (1.5, 0.5)-(3.5, 2.5) -> shifted by -0.5: (1, 0)-(3, 2); 2x2 samples at x in {1.5, 2.5}, y in {0.5, 1.5}
    out = ps_roi_align(ramp, torch.tensor([[0, 1.5, 0.5, 3.5, 2.5]]), 1, 1.0, 2)
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(10 * 1.0 + 2.0)


def test_hand_derived_position_sensitive_channels():
    # 2x2 bins, 1 group: bin (i, j) must read channel i * 2 + j only
    inp = torch.zeros(1, 4, 6, 6)
    for ch in range(4):
        inp[0, ch] = ch + 1.0
    out = ps_roi_align(inp, torch.tensor([[0, 0.5, 0.5, 4.5, 4.5]]), 2, 1.0, 1)
    assert out[0, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_hand_derived_outside_and_border():
    ones = torch.ones(1, 1, 4, 4)
    # every sample at y, x in [-1, 0) clamps onto the border and reads 1
    near = ps_roi_align(ones, torch.tensor([[0, -0.4, -0.4, 0.4, 0.4]]), 1, 1.0, 2)
    assert near.item() == pytest.approx(1.0)
    # box (-4, 0)-(0, 4) shifted to (-4.5, -0.5)-(-0.5, 3.5): x samples at -3.5 (0) and -1.5 (0) -> 0
    far = ps_roi_align(ones, torch.tensor([[0, -4.0, 0.0, 0.0, 4.0]]), 1, 1.0, 2)
    assert far.item() == 0.0
    # half the samples out beyond -1 and half inside: mean is 0.5
    half = ps_roi_align(ones, torch.tensor([[0, -3.0, 1.0, 3.0, 3.0]]), 1, 1.0, 2)
    assert half.item() == pytest.approx(0.5)


def test_adaptive_sampling_grid():
    # a 7x7-pixel RoI over 1 output bin -> ceil(7 / 1) = 7 samples each way: the mean of a linear map is its centre
    ramp = (torch.arange(16.0)[:, None] * 100 + torch.arange(16.0)[None, :])[None, None]
    out = ps_roi_align(ramp, torch.tensor([[0, 2.5, 3.5, 9.5, 10.5]]), 1, 1.0, -1)
    assert out.item() == pytest.approx(100 * 6.5 + 5.5, rel=1e-6)


@pytest.mark.parametrize("sr", [1, 2, -1])
@pytest.mark.parametrize("groups,p", [(2, 3), (3, 2), (1, 7)])
def test_matches_kernel_transcription(sr, groups, p):
    g = torch.Generator().manual_seed(sr * 10 + p)
    inp = torch.randn(2, groups * p * p, 9, 11, generator=g, dtype=torch.float64)
    rois = torch.tensor(
        [
            [0, 3.0, 4.0, 60.0, 50.0],
            [1, -20.0, -8.0, 30.0, 40.0],  # partly outside
            [1, 80.0, 60.0, 200.0, 190.0],  # mostly outside
            [0, 10.0, 10.0, 10.8, 11.3],  # tiny
            [1, 0.0, 0.0, 88.0, 72.0],  # the whole map
        ],
        dtype=torch.float64,
    )
    got = ps_roi_align(inp, rois, p, 1 / 8, sr)
    want = kernel_loop(inp, rois, p, p, 1 / 8, sr)
    assert got.shape == (5, groups, p, p)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_rectangular_output_and_module():
    inp = torch.randn(1, 2 * 2 * 3, 8, 8, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 2.0, 20.0, 30.0]], dtype=torch.float64)
    mod = PSRoIAlign((2, 3), 0.25, 2)
    torch.testing.assert_close(mod(inp, rois), kernel_loop(inp, rois, 2, 3, 0.25, 2))


@pytest.mark.parametrize("sr", [2, -1])
def test_gradcheck(sr):
    inp = torch.randn(2, 2 * 2 * 2, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 1.2, 0.3, 40.5, 30.1], [1, -10.0, -5.0, 20.0, 100.0], [1, 5.0, 5.0, 6.0, 7.0]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(lambda t: ps_roi_align(t, rois, 2, 1 / 8, sr), (inp,))


def test_empty_and_bad_inputs():
    inp = torch.randn(1, 8, 4, 4)
    assert ps_roi_align(inp, torch.zeros(0, 5), 2, 1.0, 2).shape == (0, 2, 2, 2)
    with pytest.raises(ValueError, match="multiple of"):
        ps_roi_align(torch.randn(1, 7, 4, 4), torch.zeros(1, 5), 2)
    with pytest.raises(ValueError, match=r"Tensor\[K, 5\]"):
        ps_roi_align(inp, torch.zeros(3, 4), 2)
