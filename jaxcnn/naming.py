"""Names across the three: a torch state_dict key, the linen variable that holds it, the NNX variable that holds it.

    torch 'conv_stack.0.weight'  <->  linen ('params', 'conv_stack_0', 'kernel')  <->  NNX ('conv_stack', 0, 'kernel')
    torch '3.running_mean'       <->  linen ('batch_stats', 'layers_3', 'mean')    <->  NNX (3, 'mean')

A torch prefix is the Flax module name with '.' as '_' (a bare nn.Sequential's '3' -> 'layers_3'); an NNX path
is the torch prefix itself, its indices as ints. Leaves: conv and Linear weights are kernels, BatchNorm's
weight its scale, its running statistics batch_stats (num_batches_tracked has no Flax counterpart).
"""

import re
from typing import Sequence

# torch leaf -> (linen collection, Flax leaf), of BatchNorm and of the weighted layers (conv, Linear).
BATCHNORM = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
WEIGHTED = {"weight": ("params", "kernel"), "bias": ("params", "bias")}
DROPPED = "num_batches_tracked"
_TORCH_LEAF = {slot: leaf for table in (WEIGHTED, BATCHNORM) for leaf, slot in table.items()}


def flax_name(torch_prefix: str) -> str:
    """'conv_stack.0' -> 'conv_stack_0'; '3' (a bare nn.Sequential) -> 'layers_3'."""
    name = torch_prefix.replace(".", "_")
    return f"layers_{name}" if re.match(r"\d", name) else name


def torch_prefix(flax_module: str, sequentials: Sequence[str] = ()) -> str:
    """The inverse of flax_name, given the torch attributes that are nn.Sequentials ('' for a bare one):
    'conv_stack_0' -> 'conv_stack.0' when 'conv_stack' is one; 'layers_3' -> '3' when '' is one."""
    for sequential in sequentials:
        head = f"{sequential}_" if sequential else "layers_"
        index = flax_module[len(head):]
        if flax_module.startswith(head) and index.isdigit():
            return f"{sequential}.{index}" if sequential else index
    return flax_module


def linen_path(nnx_path: Sequence[str | int], collection: str) -> tuple[str, str, str]:
    """An NNX variable's path, ('conv_stack', 0, 'kernel'), as the linen variable's: ('params', 'conv_stack_0',
    'kernel'), `collection` being 'params' (an nnx.Param) or 'batch_stats' (an nnx.BatchStat)."""
    *module, leaf = nnx_path
    if not module:
        raise ValueError(f"{tuple(nnx_path)}: a variable outside any layer has no linen name")
    return collection, flax_name(".".join(map(str, module))), str(leaf)


def torch_key(nnx_path: Sequence[str | int], collection: str) -> str:
    """An NNX variable's path as its torch state_dict key: ('features', 3, 'kernel') -> 'features.3.weight';
    ('conv', 1, 'mean'), 'batch_stats' -> 'conv.1.running_mean'.

    Raises:
        KeyError: a leaf that no torch layer of jaxcnn's has (the message lists those it knows).
    """
    *module, leaf = nnx_path
    if (collection, leaf) not in _TORCH_LEAF:
        raise KeyError(f"{tuple(nnx_path)}: no torch name for {collection} '{leaf}'; known: {sorted(_TORCH_LEAF)}")
    return ".".join([*map(str, module), _TORCH_LEAF[collection, leaf]])
