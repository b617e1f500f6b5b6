"""Model registry: `create_model(name, **kwargs)` and `list_models()`, as in timm."""

import dataclasses
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcnn.config import ModelConfig
from jaxcnn.nnx_model import NNXModel

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CONFIGS: dict[str, ModelConfig] = {}
InputSize = Union[int, Sequence[int]]
# The elementwise nonlinearity of a network (`act` field): `create_model(name, act=...)` swaps it.
Activation = Callable[[jax.Array], jax.Array]


def hw(size: InputSize) -> tuple[int, int]:
    """An input_size argument (int or (H, W)) as (H, W)."""
    return (size, size) if isinstance(size, int) else tuple(size)


def register_model(name: str, config: ModelConfig | None = None):
    """Class or factory decorator: registers a network under `name`, so that `create_model(name)` builds it.

    Arguments:
        name: the registry name (`list_models()`, `create_model(name)`, the model flags of the commands).
        config: what the rest of the project needs to know of the network (`jaxcnn.ModelConfig`: preprocessing,
            loss, the notebook's recipe, torch's nn.Sequential names); default `ModelConfig()`.

    Returns:
        The decorator; it returns the class (or factory) unchanged.

    Raises:
        ValueError: (when decorating) `name` is registered already.
    """

    def add(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        _CONFIGS[name] = config or ModelConfig()
        return fn

    return add


def model_config(name: str) -> ModelConfig:
    """The `jaxcnn.ModelConfig` the network `name` was registered with.

    Raises:
        KeyError: an unknown name (the message lists the registry).
    """
    if name not in _CONFIGS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _CONFIGS[name]


def registered_name(model: nn.Module) -> str | None:
    """The registry name `model` was built under (VGG's name from its `config` and `batch_norm`), or None."""
    for name, build in _MODELS.items():
        cls, keywords = getattr(build, "func", build), getattr(build, "keywords", {})
        if type(model) is cls and all(getattr(model, k, None) == v for k, v in keywords.items()):
            return name
    return None


def config_of(model: nn.Module) -> ModelConfig:
    """The `jaxcnn.ModelConfig` of the registry network `model` is an instance of; `ModelConfig()` for a network
    outside the registry (a ported one, your own)."""
    name = registered_name(model)
    return _CONFIGS[name] if name else ModelConfig()


def list_models() -> list[str]:
    """Names of every registered network, sorted."""
    return sorted(_MODELS)


APIS = ("linen", "nnx")


def create_model(name: str, api: str = "linen", rngs=None, **kwargs):
    """Builds the registered network `name`: a Flax linen module, or with api="nnx" a `jaxcnn.NNXModel`.

    With no keyword arguments it is exactly the network its notebook (or torchvision, for VGG and AlexNet)
    builds; the networks and their torch originals: docs/parity.md, "The networks".

    Arguments:
        name: a registry name (`jaxcnn.list_models()`): "lenet5_mnist", "mnist_cnn", "vgg16_bn", ...
        api: "linen" (a flax.linen Module: `variables = model.init(key, x)`, `model.apply(variables, x)`) or "nnx"
            (a `jaxcnn.NNXModel`, an nnx.Module holding its variables, initialised from `rngs`; the same parameter
            tree and outputs as the linen module; docs/nnx.md).
        rngs: for api="nnx" only, an `nnx.Rngs` (streams 'params' and 'dropout', else 'default').
        **kwargs: the network's fields, what its notebook parametrises: `in_channels`, `num_classes` (or
            `out_channels`), `input_size` (an int or (H, W); the example size of networks that take any size),
            `weight_init` ('torch': torch's default initialisation, U(+-1/sqrt(fan_in)); 'flax': LeCun normal
            kernels, zero biases), `conv_implementation` ('auto', 'xla' or 'banded'), `act` (the nonlinearity,
            where the network has a ReLU), `dropout` (the rate, where it has Dropout).

    Returns:
        The module. It takes NHWC input x (N, H, W, C) of any float or integer dtype (computed in float32, or in
        float64 under `jax.enable_x64`), `model.input_shape` being one image's (H, W, C), and returns (N,
        num_classes) logits; `conv_relu_conv` returns a feature map (N, H-4, W-4, out_channels). Training mode:
        `model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})`.

    Raises:
        KeyError: an unknown name (the message lists the registry).
        TypeError: a keyword argument the network does not have (the message lists those it has); api="nnx"
            without rngs, or rngs with api="linen".
        ValueError: an api other than "linen" and "nnx".
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    if api == "nnx":
        if rngs is None:
            raise TypeError(f'create_model({name!r}, api="nnx") needs rngs, e.g. rngs=nnx.Rngs(0)')
        return NNXModel(create_model(name, **kwargs), rngs=rngs)
    if rngs is not None:
        raise TypeError("rngs is for api='nnx'; a linen module takes its key in model.init(key, x)")
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    build = _MODELS[name]
    cls = getattr(build, "func", build)  # a functools.partial of a module class, or the class
    if dataclasses.is_dataclass(cls):
        accepted = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"{name} got unexpected keyword arguments {unknown}; it accepts {sorted(accepted)}")
    return build(**kwargs)


class CourseNet(nn.Module):
    """Base of the registry networks: channels-last input, checked against `input_shape`.

    Subclasses have `input_size` and `in_channels` fields and say whether a
    Linear layer fixes the spatial size (`fixed_size`; if not, `input_size` is
    only the example size used by summaries and tests).
    """

    fixed_size = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one input image in this configuration."""
        return (*hw(self.input_size), self.in_channels)

    def check_input(self, x: jax.Array) -> jax.Array:
        """x as the network computes on it: integer, bool, float16 and bfloat16 pixels become float32 (the same
        result as float32 input of those values); float32 and float64 pass. Raises a ValueError naming the
        expected (N, H, W, C) shape when x does not fit."""
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
            x = x.astype(jnp.float32)
        want = self.input_shape
        got = tuple(x.shape)
        fits = len(got) == len(want) + 1 and got[-1] == want[-1]
        if fits and self.fixed_size:
            fits = got[1:] == want
        if not fits:
            expected = ", ".join(map(str, want)) if self.fixed_size else "H, W, " + str(want[-1])
            hint = ""
            if len(got) == len(want) + 1 and got[1] == want[-1] and got[-1] != want[-1]:
                hint = " It looks like NCHW (torch's layout): pass x.transpose(0, 2, 3, 1)."
            raise ValueError(f"{type(self).__name__} expects NHWC input of shape (N, {expected}), got {got}.{hint}")
        return x
