"""Fine-tuning as torch users do it: start from a torch-keyed weight file with a fresh classifier head, keep chosen
layers frozen (their parameters and BatchNorm statistics bit-identical), give the head its own learning rate.

    variables, notes = start_from(model, variables, "vgg16.safetensors")       # strict, but for a resized head
    labels = parameter_groups(model, variables["params"], freeze=("features",), head_lr=True)
    tx = grouped(optax_of_lr(1e-3), labels, head=optax_of_lr(1e-2))

Prefixes and the head are named in torch's state_dict terms ('features', 'features.0', 'classifier.6'), matched
at '.' boundaries; jaxcnn's Flax module names are the same with '_' ('features_0').
"""

from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
import optax
from flax import linen as nn

import jaxcnn
from jaxcnn.interchange import ConversionError, torch_prefix
from jaxcnn.layers import BatchNorm

FROZEN, HEAD, TRAIN = "frozen", "head", "train"


def _prefix_of(model: nn.Module, flax_module: str) -> str:
    return torch_prefix(flax_module, jaxcnn.config_of(model).torch_sequentials)


def _under(prefix: str, key: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def head_prefix(model: nn.Module) -> str:
    """The torch prefix of the model's output layer (its last layer with a weight): 'classifier.6' for VGG."""
    weights = [k.removesuffix(".weight") for k in jaxcnn.torch_keys(model) if k.endswith(".weight")]
    return weights[-1]


def start_from(model: nn.Module, variables: dict, path: str | Path) -> tuple[dict, list[str]]:
    """`variables` replaced by the torch-keyed .safetensors at `path` (parity pretrained's output, any
    --export-torch): every key loaded strictly, except the head's when the file's shape differs (another
    num_classes) or the file has none: those stay as drawn in `variables`, as big_vision's `dont_load`.

    Returns:
        (variables, notes): the notes name what was not loaded and why.
    Raises:
        ConversionError naming every unexpected, missing and misshaped key outside the head.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"--weights {path}: give a torch-keyed .safetensors (python -m parity pretrained NAME --out "
                         "FILE.safetensors writes one; python -m parity convert turns a .pt into one)")
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: no such file")
    given = jaxcnn.read_torch_safetensors(path)
    fresh = jaxcnn.torch_state_dict(model, variables)
    head = head_prefix(model)
    in_head = {k for k in fresh if _under(head, k)}
    misshaped = {k for k in fresh.keys() & given.keys()  # num_batches_tracked: a count Flax does not keep
                 if np.shape(given[k]) != np.shape(fresh[k]) and not k.endswith(".num_batches_tracked")}
    fresh_head = (misshaped | (fresh.keys() - given.keys())) & in_head
    missing = sorted(fresh.keys() - given.keys() - in_head)
    unexpected = sorted(given.keys() - fresh.keys())
    wrong = [f"{k}: the file has {tuple(np.shape(given[k]))}, the model {tuple(np.shape(fresh[k]))}"
             for k in sorted(misshaped - in_head)]
    if missing or unexpected or wrong:
        raise ConversionError(missing, unexpected, wrong, f"--weights {path}")
    merged = {k: fresh[k] if k in fresh_head else given[k] for k in fresh}
    loaded = jaxcnn.load_torch_weights(model, merged)
    notes = []
    if fresh_head:
        was = tuple(np.shape(given[f"{head}.weight"])) if f"{head}.weight" in given else None
        now = tuple(np.shape(fresh[f"{head}.weight"]))
        notes.append(f"new head {head}: {now[0]} outputs drawn fresh (the file's is {was or 'absent'})")
    return loaded, notes


def parameter_groups(model: nn.Module, params: Any, freeze: Sequence[str] = (), head_lr: bool = False) -> Any:
    """A tree like `params` labelling each array FROZEN (under a `freeze` prefix), HEAD (the output layer, when
    head_lr) or TRAIN. Raises ValueError for a prefix that matches no parameter, listing the prefixes there are."""
    head = head_prefix(model)
    prefixes = {name: _prefix_of(model, name) for name in params}
    for wanted in freeze:
        if not any(_under(wanted, p) for p in prefixes.values()):
            known = sorted({p.split(".")[0] for p in prefixes.values()} | set(prefixes.values()))
            raise ValueError(f"--freeze {wanted}: no parameter is under it; the model's layers: {', '.join(known)}")
        if _under(wanted, head):
            raise ValueError(f"--freeze {wanted} would freeze the head {head}: nothing would train")

    def label(name: str) -> str:
        prefix = prefixes[name]
        if any(_under(wanted, prefix) for wanted in freeze):
            return FROZEN
        return HEAD if head_lr and prefix == head else TRAIN

    return {name: jax.tree_util.tree_map(lambda _, n=name: label(n), tree) for name, tree in params.items()}


def grouped(tx: optax.GradientTransformation, labels: Any,
            head: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """tx for TRAIN parameters, `head` (default tx) for HEAD, no update at all for FROZEN ones (optax.set_to_zero:
    not a zero learning rate, so weight decay and momentum leave them bit-identical too)."""
    return optax.multi_transform({TRAIN: tx, HEAD: head or tx, FROZEN: optax.set_to_zero()}, labels)


def frozen_modules(labels: Any) -> frozenset[str]:
    """The top-level Flax modules whose parameters are all FROZEN."""
    return frozenset(name for name, tree in labels.items()
                     if all(leaf == FROZEN for leaf in jax.tree_util.tree_leaves(tree)))


def frozen_batchnorm(frozen: frozenset[str]):
    """A flax method interceptor (`nn.intercept_methods`) running the BatchNorms among `frozen` in eval mode:
    they normalise with their running statistics and leave them as they are, as torch's `module.eval()` on
    frozen layers does."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, BatchNorm) and context.method_name == "__call__" and module.name in frozen:
            kwargs = dict(kwargs, train=False)
            args = args[:1]
        return next_fun(*args, **kwargs)

    return interceptor
