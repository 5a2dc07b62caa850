"""swap_modules: replacements by exact type, on a copy, with sharing and the original left alone."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lighthead_edge.export.swap import swap_modules
from lighthead_edge.ops.ps_roi_align import PSRoIAlign
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport


class TinyHead(nn.Module):
    """conv -> thin map -> PS-RoIAlign -> fc, the shape of the detector's R-CNN stage in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.thin = nn.Sequential(nn.Conv2d(3, 2 * 3 * 3, 3, padding=1), nn.ReLU())
        self.pooler = PSRoIAlign(3, 1 / 4, 2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4), nn.ReLU())

    def forward(self, image: Tensor, rois: Tensor) -> Tensor:
        return self.fc(self.pooler(self.thin(image), rois))


class MyReLU(nn.ReLU):
    pass


def _inputs() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 12, 16, generator=generator)
    rois = torch.tensor([[0, 2.0, 3.0, 40.0, 30.0], [1, -6.0, 10.0, 20.0, 52.0], [1, 30.0, 1.0, 31.0, 2.0]])
    return image, rois


def test_swap_replaces_on_a_copy_and_keeps_outputs() -> None:
    model = TinyHead().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forward_before = PSRoIAlign.forward

    swapped = swap_modules(model, {PSRoIAlign: PSRoIAlignExport.from_module})

    assert type(swapped.pooler) is PSRoIAlignExport and swapped.pooler.geometry.output_size == (3, 3)
    assert type(model.pooler) is PSRoIAlign, "the original must keep its module"
    assert PSRoIAlign.forward is forward_before, "nothing may be patched on the class"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(a is not b for a, b in zip(model.parameters(), swapped.parameters(), strict=True))
    image, rois = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(swapped(image, rois), model(image, rois), rtol=0, atol=1e-5)


def test_exact_type_only_and_nested_containers() -> None:
    model = nn.Sequential(nn.ReLU(), nn.Sequential(MyReLU(), nn.ModuleList([nn.ReLU(), nn.Tanh()])))
    swapped = swap_modules(model, {nn.ReLU: lambda old: nn.GELU()})
    assert [type(m) for m in swapped.modules()] == [
        nn.Sequential, nn.GELU, nn.Sequential, MyReLU, nn.ModuleList, nn.GELU, nn.Tanh,
    ]  # fmt: skip
    assert [type(m) for m in model.modules()] == [
        nn.Sequential, nn.ReLU, nn.Sequential, MyReLU, nn.ModuleList, nn.ReLU, nn.Tanh,
    ]  # fmt: skip


def test_shared_module_gets_one_shared_replacement() -> None:
    shared = nn.ReLU()
    model = nn.Sequential(shared, nn.Linear(2, 2), shared)
    calls = []

    def factory(old: nn.Module) -> nn.Module:
        calls.append(old)
        return nn.GELU()

    swapped = swap_modules(model, {nn.ReLU: factory})
    assert len(calls) == 1 and calls[0] is not shared, "the factory gets the copy, once"
    assert swapped[0] is swapped[2] and type(swapped[0]) is nn.GELU


def test_replacement_is_not_searched_again_and_root_can_be_swapped() -> None:
    model = nn.Sequential(nn.ReLU())
    wrapped = swap_modules(model, {nn.ReLU: lambda old: nn.Sequential(old, nn.Identity())})
    assert type(wrapped[0]) is nn.Sequential and type(wrapped[0][0]) is nn.ReLU

    root = nn.ReLU()
    new_root = swap_modules(root, {nn.ReLU: lambda old: nn.GELU()})
    assert type(new_root) is nn.GELU and type(root) is nn.ReLU
