"""`NnxModel`: a native Flax NNX network (`jaxcnn.create_model(name, api="nnx", ...)`) behind the two calls the
trainer's pure steps make of a model, `init(key, x)` and `apply(variables, x, train=, mutable=, rngs=)`, so that
`--api nnx` runs the very steps, data-parallel sharding, checkpoints, exact resume and export of `--api linen`.

The network is split once (`nnx.split`) into its graphdef and its state. A step's variables are the NNX state
as pure dicts under the network's own paths, which are torch's (`{'params': {'conv_stack': {0: {'kernel': ...}}},
'batch_stats': {'conv': {1: {'mean': ...}}}}`: its nnx.Params and nnx.BatchStats); `apply` merges them with the
graphdef (`nnx.merge`), switches the network to `train()` or `eval()`, calls it and reads its updated BatchStats
back (`nnx.state`). All of that happens while jit traces the step: a compiled step runs no Python and no graph
traversal, so it is the same program linen's step is, with the same optax update on the same arrays.

Dropout: each Dropout layer keeps its nnx RngStream; a training call gives the i-th stream the key
fold_in(dropout key, i) (the step's key, itself folded with the step number as for linen) and count 0, so the
masks follow from the run's seed and step alone, and a resumed run draws the masks of an uninterrupted one.

Fine-tuning (train.trainer.finetune): the BatchNorms of frozen layers, given by their module paths (('conv', 1)),
stay in eval mode in a training call, as linen's do through finetune.frozen_batchnorm and torch's after `.eval()`.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import jaxcnn
from jaxcnn.nnx import BatchNorm, linen_twin, linen_variables, load_linen_variables

APIS = ("linen", "nnx")
_EVAL_KEY = 0  # the Dropout streams' key outside training (they draw nothing there)


def _variables(net: nnx.Module) -> dict:
    """{'params': ..., 'batch_stats': ...} of `net` as pure dicts ('batch_stats' only where it has BatchNorm)."""
    _, params, stats, _ = nnx.split(net, nnx.Param, nnx.BatchStat, ...)
    return {"params": nnx.to_pure_dict(params)} | ({"batch_stats": nnx.to_pure_dict(stats)} if len(stats) else {})


class NnxModel:
    """The registry network `name` built with `kwargs` (`create_model(name, api="nnx", rngs=..., **kwargs)`),
    as the trainer's steps call a model. `input_shape` and the network's fields are the network's; `twin` is its
    linen twin (unbound: the torch keys in torch's order, jaxcnn.torch_keys)."""

    def __init__(self, name: str, **kwargs):
        self.name, self.kwargs = name, dict(kwargs)
        abstract = nnx.eval_shape(lambda: self.create(nnx.Rngs(0)))
        self.graphdef, _, _, rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
        self.rest = nnx.to_flat_state(rest)
        other = [path for path, v in self.rest if not isinstance(v, (nnx.RngKey, nnx.RngCount))]
        if other:
            raise TypeError(f"{name}'s NNX network holds variables the trainer does not know how to carry: {other}")
        self.input_shape, self.twin = abstract.input_shape, linen_twin(abstract)
        self.fields = {k: getattr(abstract, k) for k in ("num_classes", "in_channels", "input_size")
                       if hasattr(abstract, k)}

    def __getattr__(self, name: str) -> Any:  # num_classes, in_channels, ...: as the network has them
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def create(self, rngs: nnx.Rngs) -> nnx.Module:
        """A new network, its weights drawn from rngs."""
        return jaxcnn.create_model(self.name, api="nnx", rngs=rngs, **self.kwargs)

    def init(self, key: jax.Array, x: Any = None) -> dict:
        """{'params': ..., 'batch_stats': ...} (pure dicts) of a new network drawn from `key` (`x` unused: the
        network's shape is its arguments')."""
        return _variables(self.create(nnx.Rngs(key)))

    def _rest(self, key: jax.Array | None) -> nnx.State:
        """The Dropout streams' state: the i-th key fold_in(key, i), every count 0."""
        if key is None:
            key = jax.random.key(_EVAL_KEY)
        elif not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        keys = (jax.random.fold_in(key, i) for i in range(len(self.rest)))
        return nnx.from_flat_state([(path, v.replace(next(keys) if isinstance(v, nnx.RngKey)
                                                     else jnp.zeros(v.shape, v.dtype)))
                                    for path, v in self.rest])

    def network(self, variables: dict, dropout_key: jax.Array | None = None) -> nnx.Module:
        """The network holding `variables` ({'params', 'batch_stats'} pure dicts), in eval mode."""
        net = nnx.merge(self.graphdef, variables["params"], variables.get("batch_stats", {}),
                        self._rest(dropout_key))
        net.eval()
        return net

    def apply(self, variables: dict, x: jax.Array, train: bool = False, mutable: Any = False,
              rngs: dict | None = None, frozen: frozenset[tuple] = frozenset()) -> Any:
        """The network's outputs on `x` as linen's `model.apply` gives them: in `train` mode (Dropout keys from
        rngs['dropout'], BatchNorm on the batch, but for the BatchNorms at the module paths in `frozen`, which
        read and keep their running statistics) and with `mutable`, (outputs, {'batch_stats': updated})."""
        net = self.network(variables, (rngs or {}).get("dropout") if train else None)
        if train:
            net.train()
            for path, module in nnx.iter_modules(net):
                if path in frozen and isinstance(module, BatchNorm):
                    module.use_running_average = True
        outputs = net(x)
        if not mutable:
            return outputs
        stats = nnx.state(net, nnx.BatchStat)
        return outputs, ({"batch_stats": nnx.to_pure_dict(stats)} if len(stats) else {})

    def linen(self, variables: dict) -> tuple[Any, dict]:
        """(the linen twin, its variables) of the network holding `variables` (jaxcnn.nnx.linen_variables)."""
        net = self.network(variables)
        return linen_twin(net), linen_variables(net)

    def from_linen(self, twin_variables: dict) -> dict:
        """The pure-dict variables of the network holding its linen twin's variables."""
        net = self.network(self.init(jax.random.key(0)))
        return _variables(load_linen_variables(net, twin_variables))
