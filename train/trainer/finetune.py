"""Fine-tuning as torch users do it: start from a torch-keyed weight file with a fresh classifier head, keep chosen
layers frozen (their parameters and BatchNorm statistics bit-identical), give the head its own learning rate.

    variables, notes = start_from(model, variables, "vgg16.safetensors")       # strict, but for a resized head
    labels = parameter_groups(model, variables["params"], freeze=("features",), head_lr=True)
    tx = grouped(optax_of_lr(1e-3), labels, head=optax_of_lr(1e-2))

Prefixes and the head are named in torch's state_dict terms ('features', 'features.0', 'classifier.6'), matched
at '.' boundaries, for a linen network and for an NNX one (train.trainer.nnx_model.NnxModel) alike: jaxcnn's linen
module names are the same with '_' ('features_0'), an NNX network's state paths the names themselves
('features/0/kernel').
"""

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax
from flax import linen as nn

import jaxcnn
from jaxcnn.interchange import ConversionError, torch_prefix
from jaxcnn.layers import BatchNorm
from train.trainer.nnx_model import NnxModel

FROZEN, HEAD, TRAIN = "frozen", "head", "train"


def _path(keys: tuple) -> tuple:
    """A jax tree path ((DictKey('conv'), DictKey(0), DictKey('kernel'))) as its keys: ('conv', 0, 'kernel')."""
    return tuple(k.key for k in keys)


def _prefix_of(model: nn.Module | NnxModel, path: tuple) -> str:
    """The torch prefix of the layer holding the parameter at `path` in the model's params: an NNX network's
    module path itself (('features', 0, 'kernel') -> 'features.0'), a linen network's top-level module's
    torch name (('features_0', 'kernel') -> 'features.0')."""
    if isinstance(model, NnxModel):
        return ".".join(map(str, path[:-1]))
    return torch_prefix(path[0], jaxcnn.config_of(model).torch_sequentials)


def _under(prefix: str, key: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def head_prefix(model: nn.Module | NnxModel) -> str:
    """The torch prefix of the model's output layer (its last layer with a weight): 'classifier.6' for VGG."""
    keys = jaxcnn.torch_keys(model.twin if isinstance(model, NnxModel) else model)  # in torch's order
    weights = [k.removesuffix(".weight") for k in keys if k.endswith(".weight")]
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


def parameter_groups(model: nn.Module | NnxModel, params: Any, freeze: Sequence[str] = (),
                     head_lr: bool = False) -> Any:
    """A tree like `params` (a linen network's, or an NnxModel's under torch's paths) labelling each array FROZEN
    (under a `freeze` prefix), HEAD (the output layer, when head_lr) or TRAIN. Raises ValueError for a prefix
    that matches no parameter, listing the prefixes there are."""
    head = head_prefix(model)
    prefixes = {path: _prefix_of(model, path) for path in
                (_path(keys) for keys, _ in jax.tree_util.tree_flatten_with_path(params)[0])}
    for wanted in freeze:
        if not any(_under(wanted, p) for p in prefixes.values()):
            known = sorted({p.split(".")[0] for p in prefixes.values()} | set(prefixes.values()))
            raise ValueError(f"--freeze {wanted}: no parameter is under it; the model's layers: {', '.join(known)}")
        if _under(wanted, head):
            raise ValueError(f"--freeze {wanted} would freeze the head {head}: nothing would train")

    def label(keys: tuple, _) -> str:
        prefix = prefixes[_path(keys)]
        if any(_under(wanted, prefix) for wanted in freeze):
            return FROZEN
        return HEAD if head_lr and prefix == head else TRAIN

    return jax.tree_util.tree_map_with_path(label, params)


def grouped(tx: optax.GradientTransformation, labels: Any,
            head: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """tx for TRAIN parameters, `head` (default tx) for HEAD, no update at all for FROZEN ones (optax.set_to_zero:
    not a zero learning rate, so weight decay and momentum leave them bit-identical too)."""
    return optax.multi_transform({TRAIN: tx, HEAD: head or tx, FROZEN: optax.set_to_zero()}, labels)


def frozen_modules(labels: Any) -> frozenset[tuple]:
    """The paths of the modules whose parameters are all FROZEN: a linen network's ('conv_1',), an NNX
    network's ('conv', 1) (a parameter's path less its last key)."""
    modules: dict[tuple, bool] = {}
    for keys, leaf in jax.tree_util.tree_flatten_with_path(labels)[0]:
        module = _path(keys)[:-1]
        modules[module] = modules.get(module, True) and leaf == FROZEN
    return frozenset(module for module, frozen in modules.items() if frozen)


def frozen_batchnorm(frozen: frozenset[tuple]):
    """A flax method interceptor (`nn.intercept_methods`) running the linen BatchNorms whose paths are among
    `frozen` in eval mode: they normalise with their running statistics and leave them as they are, as torch's
    `module.eval()` on frozen layers does."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, BatchNorm) and context.method_name == "__call__" and module.path in frozen:
            kwargs = dict(kwargs, train=False)
            args = args[:1]
        return next_fun(*args, **kwargs)

    return interceptor


def frozen_apply(model: nn.Module | NnxModel, frozen: frozenset[tuple] = frozenset()) -> Callable:
    """model.apply with the BatchNorms of the `frozen` modules (frozen_modules) in eval mode: a linen network's
    through frozen_batchnorm, an NNX network's through NnxModel.apply's `frozen`."""
    if not frozen:
        return model.apply
    if isinstance(model, NnxModel):
        return functools.partial(model.apply, frozen=frozen)

    def apply(*args, **kwargs):
        with nn.intercept_methods(frozen_batchnorm(frozen)):
            return model.apply(*args, **kwargs)

    return apply
