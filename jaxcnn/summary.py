"""What a network does layer by layer: a call trace, and a summary like `torchsummary.summary`."""

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.traverse_util import flatten_dict


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One submodule call: its path in the parameter tree, its class, its input and output shapes."""
    path: tuple[str, ...]
    layer: type
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def trace_layers(model: nn.Module, input_shape: Sequence[int], train: bool = False,
                 dtype=jnp.float32) -> tuple[Any, list[LayerCall]]:
    """Runs `model.init` abstractly (no FLOPs, no memory) on an input of `input_shape`.

    Returns the variables' shapes (ShapeDtypeStructs) and the submodule calls in
    the order they started.
    """
    calls: list[dict] = []

    def record(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not context.module.path:
            return next_fun(*args, **kwargs)
        entry = {"path": tuple(context.module.path), "layer": type(context.module),
                 "input_shape": tuple(getattr(args[0], "shape", ())) if args else ()}
        calls.append(entry)
        out = next_fun(*args, **kwargs)
        entry["output_shape"] = tuple(getattr(out, "shape", ()))
        return out

    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    kwargs = {"train": True} if train else {}  # bare layers take no `train`
    with nn.intercept_methods(record):
        shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros(tuple(input_shape), dtype), **kwargs))
    return shapes, [LayerCall(**c) for c in calls]


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


@dataclasses.dataclass(frozen=True)
class Summary:
    """What `jaxcnn.summary(model)` found; `print(summary)` shows it as torchsummary's table.

    Arguments:
        rows: per top-level layer (name, layer type, output shape (N, H, W, C), parameter count).
        input_shape: the traced input, (1, H, W, C).
        total_params: every parameter (trainable, as in torch).
        non_trainable: BatchNorm's running statistics (batch_stats), counted apart.
    """
    rows: list[tuple[str, str, tuple[int, ...], int]]  # (name, layer type, output shape, params)
    input_shape: tuple[int, ...]
    total_params: int
    non_trainable: int  # batch statistics

    def __str__(self) -> str:
        line = "-" * 72
        out = [line, f"{'Layer (type)':<34}{'Output Shape (NHWC)':<26}{'Param #':>12}", "=" * 72]
        for name, layer, shape, params in self.rows:
            out.append(f"{f'{name} ({layer})':<34}{str([-1, *shape[1:]]):<26}{params:>12,}")
        out += ["=" * 72, f"Input shape: {list(self.input_shape)}", f"Total params: {self.total_params:,}",
                f"Trainable params: {self.total_params:,}",
                f"Non-trainable values (BatchNorm running statistics): {self.non_trainable:,}", line]
        return "\n".join(out)


def summary(model: nn.Module, input_shape: Sequence[int] | None = None) -> Summary:
    """Per top-level layer: name, class, output shape and parameter count; totals.

    input_shape is one image's (H, W, C); it defaults to the model's own `input_shape`.
    Print the result for a torchsummary-like table.
    """
    shape = (1, *(input_shape or model.input_shape))
    variables, calls = trace_layers(model, shape)
    params = flatten_dict(variables.get("params", {}))
    rows = []
    for call in calls:
        if len(call.path) != 1:
            continue
        n = sum(math.prod(v.shape) for k, v in params.items() if k[0] == call.path[0])
        rows.append((call.path[0], call.layer.__name__, call.output_shape, n))
    return Summary(rows, shape, count_params(variables.get("params", {})),
                   count_params(variables.get("batch_stats", {})))
