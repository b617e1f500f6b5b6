"""Containers that name their modules as torch does ('0', '1', ... or the given names), so that a ported
network's variables nest as its torch state_dict: `layer1/0/conv1/kernel` for `layer1.0.conv1.weight`."""

import inspect
from typing import Any, Mapping, Sequence

import jax
from flax import linen as nn


def _takes_train(module: nn.Module) -> bool:
    return "train" in inspect.signature(type(module).__call__).parameters


class ModuleDict(nn.Module):
    """torch.nn.ModuleDict: modules by name (`self.block['conv']`, or `self.block.conv` for identifier names).

    Arguments:
        modules: {name: module} (names as in the torch state_dict), or a sequence, named '0', '1', ...
    """
    modules: Mapping[str, nn.Module] | Sequence[nn.Module]

    def _items(self) -> list[tuple[str, nn.Module]]:
        items = self.modules.items() if isinstance(self.modules, Mapping) else enumerate(self.modules)
        return [(str(key), module) for key, module in items]

    def setup(self):
        for key, module in self._items():
            setattr(self, key, module.clone())

    def __getitem__(self, key: int | str) -> nn.Module:
        return getattr(self, str(key))

    def __len__(self) -> int:
        return len(self.modules)


class ModuleList(ModuleDict):
    """torch.nn.ModuleList: modules named '0', '1', ...; `self.blocks[i]`."""


class Sequential(ModuleDict):
    """torch.nn.Sequential: its modules applied in order; `train` goes to those that take it (BatchNorm,
    Dropout, ported blocks).

    Arguments:
        x: the first module's input.
        train: batch statistics and dropout on.
    Returns:
        the last module's output.
    """

    def __call__(self, x: Any, train: bool = False) -> jax.Array:
        for key, _ in self._items():
            module = self[key]
            x = module(x, train) if _takes_train(module) else module(x)
        return x
