"""Sizes that follow the batch. The port traces on one example input, where Python reads every size as a number:
`torch.zeros(x.shape[0], H, W)` records `zeros(2, 8, 8)`. Where a graph makes tensors of given sizes (factories,
expand, repeat, arange), the module is recorded again on a batch one larger; an argument that grew with it is a
multiple of the batch, and the port writes it from the input's batch instead of the example's number."""

from typing import Any, Callable

import torch
import torch.fx as fx

FUNCTIONS = frozenset({torch.zeros, torch.ones, torch.full, torch.empty, torch.arange})
METHODS = frozenset({"expand", "repeat", "new_zeros", "new_ones", "new_full", "new_empty"})


def leaves(args: Any) -> list:
    """`args` flattened through tuples and lists (torch.Size included), in order."""
    if isinstance(args, (tuple, list)):
        return [leaf for a in args for leaf in leaves(a)]
    return [args]


def _sized(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in FUNCTIONS) or (
        node.op == "call_method" and node.target in METHODS)


def _grown(example_inputs: Any, batch: int) -> Any:
    if isinstance(example_inputs, (tuple, list)):  # the inputs, or an input that is a list of tensors
        return type(example_inputs)(_grown(x, batch) for x in example_inputs)
    x = example_inputs
    return torch.cat([x, x[:1]]) if isinstance(x, torch.Tensor) and x.ndim and x.shape[0] == batch else x


def batch_arguments(gm: fx.GraphModule, example_inputs: tuple,
                    record: Callable[[tuple], fx.GraphModule]) -> dict[str, dict[int, int]]:
    """Of each node of `gm` that makes a tensor of given sizes, the positions among `leaves(node.args)` of the
    arguments that are k times the batch (position -> k), found by `record`ing again on a batch one larger.

    Arguments:
      gm: the graph recorded on `example_inputs` (the batch: the first tensor's first axis).
      record: records the same module, in the same mode, on other inputs.
    Returns:
      {node name: {position: k}}, empty where no size follows the batch (or the module takes no larger batch).
    """
    tensors = [x for x in leaves(example_inputs) if isinstance(x, torch.Tensor) and x.ndim]
    if not tensors:
        return {}
    batch = tensors[0].shape[0]
    candidates = [n for n in gm.graph.nodes if _sized(n) and any(
        isinstance(a, int) and not isinstance(a, bool) and a and a % batch == 0 for a in leaves(n.args))]
    if not candidates:
        return {}
    try:
        larger = {n.name: n for n in record(_grown(example_inputs, batch)).graph.nodes}
    except Exception:  # noqa: BLE001 - a module that takes one batch size only keeps the example's sizes
        return {}
    found = {}
    for node in candidates:
        twin = larger.get(node.name)
        if twin is None or twin.target != node.target:
            continue
        here, there = leaves(node.args), leaves(twin.args)
        if len(here) != len(there):
            continue
        grown = {i: a // batch for i, (a, b) in enumerate(zip(here, there)) if isinstance(a, int) and
                 isinstance(b, int) and a != b and a % batch == 0 and b == a // batch * (batch + 1)}
        if grown:
            found[node.name] = grown
    return found
