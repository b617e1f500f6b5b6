"""torch's containers as NNX modules for networks that name their layers ('0', '1', 'block2-1'): ModuleList,
ModuleDict and a Sequential of named layers. (jaxcnn.nnx.Sequential takes its layers in order, as
nn.Sequential(*layers) does.) The state paths are torch's keys: 'blocks/0/conv/kernel' for 'blocks.0.conv.weight'.
"""

from typing import Any, Mapping

from flax import nnx


class ModuleList(nnx.List):
    """torch.nn.ModuleList: `self.blocks[i]`, indexed as torch's."""


class ModuleDict(nnx.Dict):
    """torch.nn.ModuleDict: modules by their torch names, `self.stages['0']` or `self.stages[0]` alike (a
    ModuleList or Sequential whose torch indices have gaps is one of these)."""

    def __getitem__(self, key: int | str) -> Any:
        return super().__getitem__(str(key))


class NamedSequential(ModuleDict):
    """torch.nn.Sequential(OrderedDict(...)): layers by name, applied in the order given.

    Arguments:
        layers: {name: layer}, the names torch's (its state_dict keys' middle).
    """

    def __init__(self, layers: Mapping[str, Any]):
        super().__init__({str(k): v for k, v in layers.items()})

    def __call__(self, x: Any) -> Any:
        """x -> the last layer's output."""
        for name in self:
            x = self[name](x)
        return x
