"""Swap submodules by type on a copy of a model: how export-only replacements get in.

Nothing is patched globally and the model's source is not edited (as detectron2's ``caffe2_patch``): the caller gets a
new model in which, e.g., every ``PSRoIAlign`` has become a ``PSRoIAlignExport``, and the original keeps training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from torch import nn

Factory = Callable[[nn.Module], nn.Module]


def swap_modules(model: nn.Module, replacements: Mapping[type[nn.Module], Factory]) -> nn.Module:
    """A deep copy of ``model`` in which every submodule whose type is exactly a key is replaced by ``factory(old)``.

    Args:
        model: left untouched.
        replacements: ``{type: factory}``; the factory gets the (copied) module it replaces. Types match exactly, not
            by ``isinstance``, so a subclass is only swapped when it is listed itself.

    Returns:
        The new model; when the root's own type is listed, that is ``factory(copy of model)``. A module shared by
        several parents gets one shared replacement. What a factory returns is not searched again, so a factory may
        wrap the module it replaces or return an instance of a listed type.

    Example::

        export_model = swap_modules(model, {PSRoIAlign: PSRoIAlignExport.from_module})
    """
    model = copy.deepcopy(model)
    swapper = _Swapper(replacements)
    root = swapper.replace(model)
    if root is model:
        swapper.swap_children(model)
    return root


class _Swapper:
    """One pass over a model; remembers replaced and visited instances, so sharing and wrapping come out right."""

    def __init__(self, replacements: Mapping[type[nn.Module], Factory]) -> None:
        self.replacements = replacements
        # keyed by id, holding the old module too so that its id can't be reused while the pass runs
        self.replaced: dict[int, tuple[nn.Module, nn.Module]] = {}
        self.visited: dict[int, nn.Module] = {}

    def replace(self, module: nn.Module) -> nn.Module:
        """``module``'s replacement (made once per instance), or ``module`` itself when its type isn't listed."""
        factory = self.replacements.get(type(module))
        if factory is None:
            return module
        if id(module) not in self.replaced:
            self.replaced[id(module)] = (module, factory(module))
        return self.replaced[id(module)][1]

    def swap_children(self, parent: nn.Module) -> None:
        """Replaces listed children of ``parent`` in place and recurses into the others, once per instance."""
        self.visited[id(parent)] = parent
        # _modules, not named_children(), which yields a child registered under two names only once
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            new = self.replace(child)
            if new is not child:
                setattr(parent, name, new)  # also right for Sequential / ModuleList children named "0", "1", ...
            elif id(child) not in self.visited:
                self.swap_children(child)
