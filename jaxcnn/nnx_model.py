"""The registry networks as Flax NNX modules: `create_model(name, api="nnx", rngs=nnx.Rngs(0))`.

    model = jaxcnn.create_model("lenet5_mnist", api="nnx", rngs=nnx.Rngs(0))
    model.eval()                       # dropout off, BatchNorm uses its running statistics
    logits = model(images_nhwc)
    model.train()                      # dropout on (rng stream 'dropout'), BatchNorm statistics updated in place

An NNXModel holds the linen module it was built from (`model.module`) and that module's variables as NNX
variables: `model.params` (nnx.Param) and `model.batch_stats` (nnx.BatchStat, for networks with BatchNorm),
nested dicts named as the linen variables ('conv_stack_0' -> 'kernel'). The forward is the linen module's own
`apply`, so both APIs compute the same thing by construction. Like torch modules and NNX's own layers, a new
model is in training mode.
"""

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import linen, nnx

_KINDS = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


def _as_variables(tree: Mapping, kind: type) -> nnx.Data:
    return nnx.data(jax.tree.map(kind, dict(tree)))


class NNXModel(nnx.Module):
    """A jaxcnn (linen) network as an nnx.Module: x (N, H, W, C) -> the linen module's output.

    Arguments:
        module: the linen module (a registry network, or any linen module taking `(x, train)`).
        rngs: nnx.Rngs; stream 'params' initialises the variables (as `module.init` with that key does),
            stream 'dropout' draws each training-mode forward's dropout key. Streams fall back to 'default'.
        sample_shape: the (N, H, W, C) input to initialise with; default one image of `module.input_shape`.
        variables: linen variables to start from instead of initialising ({'params': ..., 'batch_stats': ...}).
    """

    def __init__(self, module: linen.Module, *, rngs: nnx.Rngs, sample_shape: Sequence[int] | None = None,
                 variables: Mapping[str, Any] | None = None):
        self.module = module
        self.rngs = rngs
        if variables is None:
            shape = tuple(sample_shape) if sample_shape is not None else (1, *module.input_shape)
            variables = module.init({"params": rngs.params()}, jnp.zeros(shape, jnp.float32))
        unknown = sorted(set(variables) - set(_KINDS))
        if unknown:
            raise ValueError(f"NNXModel holds the collections {sorted(_KINDS)}; the variables also have {unknown}")
        self.params = _as_variables(variables["params"], nnx.Param)
        self.batch_stats = _as_variables(variables.get("batch_stats", {}), nnx.BatchStat)
        self.deterministic = False  # model.train() / model.eval() set it (nnx.Module.set_attributes)

    def variables(self) -> dict:
        """The linen variables of this model: {'params': ..., 'batch_stats': ...} (jax arrays)."""
        variables = {"params": _values(self.params)}
        if self.batch_stats:
            variables["batch_stats"] = _values(self.batch_stats)
        return variables

    def load_variables(self, variables: Mapping[str, Any]) -> None:
        """Replaces every variable in place with linen `variables` of the same tree; raises a ValueError naming
        every missing, unexpected and misshaped array (nothing is replaced then)."""
        for collection in _KINDS:  # every collection checked before any is replaced
            want = jax.tree.map(jnp.shape, _values(getattr(self, collection)))
            got = jax.tree.map(jnp.shape, _plain(variables.get(collection, {})))
            if want != got:
                raise ValueError(f"{collection} of {type(self.module).__name__} do not fit: "
                                 f"{_differences(want, got)}")
        for collection in _KINDS:
            _assign(getattr(self, collection), variables.get(collection, {}))

    def __call__(self, x: jax.Array) -> jax.Array:
        """The linen module's forward on NHWC x (N, H, W, C): in training mode (a new model, `train()`) with a
        dropout key from the rngs' 'dropout' stream and BatchNorm statistics updated in place; after `eval()`
        with the running statistics and no dropout. Returns the linen module's output, (N, num_classes)."""
        variables = self.variables()
        if self.deterministic:
            return self.module.apply(variables, x, train=False)
        out, updates = self.module.apply(variables, x, train=True, rngs={"dropout": self.rngs.dropout()},
                                         mutable=["batch_stats"])
        if self.batch_stats:
            _assign(self.batch_stats, updates["batch_stats"])
        return out


def _is_variable(node) -> bool:
    return isinstance(node, nnx.Variable)


def _values(held) -> dict:
    return jax.tree.map(lambda v: v.get_value(), dict(held), is_leaf=_is_variable)


def _plain(tree: Mapping) -> dict:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


def _assign(held, given: Mapping) -> None:
    for key, value in given.items():
        if isinstance(value, Mapping):
            _assign(held[key], value)
        else:
            held[key].set_value(jnp.asarray(value, held[key].get_value().dtype))


def _flat_shapes(shapes: Mapping) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda s: isinstance(s, tuple))[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): shape for path, shape in flat}


def _differences(want: Mapping, got: Mapping) -> str:
    """What differs between two trees of shapes: missing, unexpected and misshaped arrays, by path."""
    want, got = _flat_shapes(want), _flat_shapes(got)
    missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    misshaped = [f"{k}: the model holds {want[k]}, the variables {got[k]}"
                 for k in sorted(want.keys() & got.keys()) if want[k] != got[k]]
    parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
             ", ".join(misshaped)]
    return "; ".join(p for p in parts if p)
