"""How the Flax port holds each torch tensor.

A layout is a permutation of torch's axes (`perm[i]` is the torch axis on Flax axis i): torch's own order, or
channels-last (N, *spatial, C) for tensors of rank >= 3. A flatten of a channels-last tensor gives a third kind,
`flat_from`: (N, F) whose features run in (*spatial, C) order instead of torch's (C, *spatial). A Linear fed by
it takes permuted weights and no transpose is needed; anything else that cares about feature order gets the
tensor converted first.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
    perm: tuple[int, ...]
    flat_from: tuple[int, ...] | None = None  # channels-last (*spatial, C) that an (N, F) tensor was flattened from

    @staticmethod
    def same(rank: int) -> "Layout":
        return Layout(tuple(range(rank)))

    @staticmethod
    def channels_last(rank: int) -> "Layout":
        """(N, *spatial, C) for rank >= 3; torch's order for ranks 0-2, where the two agree."""
        return Layout((0, *range(2, rank), 1)) if rank >= 3 else Layout.same(rank)

    @staticmethod
    def flat(channels_last_shape: tuple[int, ...]) -> "Layout":
        """(N, F) flattened from (N, *spatial, C); torch's order when there is nothing to permute."""
        spatial = math.prod(channels_last_shape[:-1])
        return Layout((0, 1), tuple(channels_last_shape)) if spatial > 1 and channels_last_shape[-1] > 1 \
            else Layout.same(2)

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def is_torch(self) -> bool:
        return self.flat_from is None and self.perm == tuple(range(self.rank))

    def axis(self, torch_dim: int) -> int:
        """The Flax axis holding torch's axis `torch_dim` (negative dims count from the end)."""
        if self.flat_from is not None and torch_dim % 2 == 1:
            raise ValueError("a flattened channels-last tensor has its features in another order")
        return self.perm.index(torch_dim % self.rank)

    def without(self, torch_dims) -> "Layout":
        """The layout after reducing `torch_dims` away (keepdim=False)."""
        gone = {d % self.rank for d in torch_dims}
        kept = [p for p in self.perm if p not in gone]
        order = sorted(kept)
        return Layout(tuple(order.index(p) for p in kept))

    def flax_shape(self, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(torch_shape[p] for p in self.perm)

    def to_flax(self, a: np.ndarray) -> np.ndarray:
        """A torch-layout array in this layout."""
        a = np.asarray(a)
        if self.flat_from is not None:
            *spatial, c = self.flat_from
            return np.moveaxis(a.reshape(a.shape[0], c, *spatial), 1, -1).reshape(a.shape[0], -1)
        return np.transpose(a, self.perm)

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        """An array in this layout in torch's."""
        a = np.asarray(a)
        if self.flat_from is not None:
            return np.moveaxis(a.reshape(a.shape[0], *self.flat_from), -1, 1).reshape(a.shape[0], -1)
        return np.transpose(a, np.argsort(self.perm))


def conversion(var: str, source: Layout, target: Layout) -> str:
    """Python (jax.numpy) that turns the Flax value named `var`, held in `source`, into `target`."""
    if source == target:
        return var
    if source.flat_from is not None:  # back to torch's feature order first
        dims = ", ".join(map(str, source.flat_from))
        var = f"jnp.moveaxis({var}.reshape({var}.shape[0], {dims}), -1, 1).reshape({var}.shape[0], -1)"
        source = Layout.same(2)
        if source == target:
            return var
    if target.flat_from is not None:
        raise ValueError("nothing converts into a flattened channels-last layout")
    inverse = np.argsort(source.perm)
    axes = tuple(int(inverse[p]) for p in target.perm)
    return f"jnp.transpose({var}, {axes})"
