"""Model registry: `create_model(name, **kwargs)` (a linen module; with api="nnx" its NNX network) and
`list_models()`, as in timm."""

import dataclasses
import inspect
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcnn.config import ModelConfig

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_NNX_MODELS: dict[str, Callable] = {}  # the NNX networks (jaxcnn.nnx), by the name of their linen twin
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


def register_nnx(name: str):
    """Class or factory decorator: registers the Flax NNX network of the registered network `name`, so that
    `create_model(name, api="nnx", rngs=...)` builds it (its keyword arguments are the linen network's fields,
    and rngs).

    Raises:
        ValueError: (when decorating) `name` is not registered with `register_model`, or has an NNX network.
    """

    def add(fn):
        if name not in _MODELS or name in _NNX_MODELS:
            raise ValueError(f"register_nnx({name!r}): register the linen network first, and one NNX network")
        _NNX_MODELS[name] = fn
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


def registered_name(model) -> str | None:
    """The registry name `model` (a linen module or an NNX network) was built under (VGG's name from its
    `config` and `batch_norm`), or None."""
    for registry in (_MODELS, _NNX_MODELS):
        for name, build in registry.items():
            cls, keywords = getattr(build, "func", build), getattr(build, "keywords", {})
            if type(model) is cls and all(getattr(model, k, None) == v for k, v in keywords.items()):
                return name
    return None


def config_of(model) -> ModelConfig:
    """The `jaxcnn.ModelConfig` of the registry network `model` is an instance of; `ModelConfig()` for a network
    outside the registry (a ported one, your own)."""
    name = registered_name(model)
    return _CONFIGS[name] if name else ModelConfig()


def list_models() -> list[str]:
    """Names of every registered network, sorted."""
    return sorted(_MODELS)


APIS = ("linen", "nnx")


def create_model(name: str, api: str = "linen", rngs=None, **kwargs):
    """Builds the registered network `name`: a Flax linen module, or with api="nnx" its Flax NNX network.

    With no keyword arguments it is exactly the network its notebook (or torchvision, for VGG and AlexNet)
    builds; the networks and their torch originals: docs/parity.md, "The networks".

    Arguments:
        name: a registry name (`jaxcnn.list_models()`): "lenet5_mnist", "mnist_cnn", "vgg16_bn", ...
        api: "linen" (a flax.linen Module: `variables = model.init(key, x)`, `model.apply(variables, x)`) or "nnx"
            (an nnx.Module written as its torch original is: its layers are attributes under torch's names,
            `net.conv_stack[0].kernel`, initialised from `rngs`, new in training mode; docs/nnx.md).
        rngs: for api="nnx" only, an `nnx.Rngs`: stream 'params' (else 'default') initialises the weights,
            stream 'dropout' (else 'default') gives each Dropout layer its keys.
        **kwargs: the network's fields, what its notebook parametrises: `in_channels`, `num_classes` (or
            `out_channels`), `input_size` (an int or (H, W); the example size of networks that take any size),
            `weight_init` ('torch': torch's default initialisation, U(+-1/sqrt(fan_in)); 'flax': LeCun normal
            kernels, zero biases), `conv_implementation` ('auto', 'xla' or 'banded'), `act` (the nonlinearity,
            where the network has a ReLU), `dropout` (the rate, where it has Dropout).

    Returns:
        The network. It takes NHWC input x (N, H, W, C) of any float or integer dtype (computed in float32, or in
        float64 under `jax.enable_x64`), `model.input_shape` being one image's (H, W, C), and returns (N,
        num_classes) logits; `conv_relu_conv` returns a feature map (N, H-4, W-4, out_channels). Training mode:
        linen `model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})`; NNX
        `net.train()` (`net.eval()` for inference), then `net(x)`.

    Raises:
        KeyError: an unknown name (the message lists the registry).
        TypeError: a keyword argument the network does not have (the message lists those it has); api="nnx"
            without rngs, or rngs with api="linen".
        ValueError: an api other than "linen" and "nnx"; api="nnx" for a network registered without an NNX one.
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    if (api == "nnx") != (rngs is not None):
        raise TypeError(f'create_model({name!r}, api="nnx") needs rngs, e.g. rngs=nnx.Rngs(0)' if api == "nnx"
                        else "rngs is for api='nnx'; a linen module takes its key in model.init(key, x)")
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if api == "nnx" and name not in _NNX_MODELS:
        raise ValueError(f"{name} has no NNX network; register one with jaxcnn.register_nnx({name!r})")
    build = (_NNX_MODELS if api == "nnx" else _MODELS)[name]
    cls = getattr(build, "func", build)  # a functools.partial of a module class, or the class
    if api == "nnx":  # (an nnx.List, such as a bare Sequential, is a dataclass too: its __init__ says it)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "rngs"}
    elif dataclasses.is_dataclass(cls):
        accepted = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}
    else:  # a factory function: its own arguments' errors
        accepted = set(kwargs)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(f"{name} got unexpected keyword arguments {unknown}; it accepts {sorted(accepted)}")
    return build(**kwargs, rngs=rngs) if api == "nnx" else build(**kwargs)


def check_input(x: jax.Array, want: tuple[int, ...], fixed_size: bool, network: str) -> jax.Array:
    """x as a registry network computes on it: integer, bool, float16 and bfloat16 pixels become float32 (the
    same result as float32 input of those values); float32 and float64 pass.

    Arguments:
        x: the input, (N, H, W, C). want: one image's (H, W, C). fixed_size: whether (H, W) must be want's (a
            Linear fixes it), else only C is. network: the class name the error message names.
    Raises:
        ValueError: naming the expected (N, H, W, C) shape when x does not fit (and NCHW when it looks like it).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    got = tuple(x.shape)
    fits = len(got) == len(want) + 1 and got[-1] == want[-1]
    if fits and fixed_size:
        fits = got[1:] == want
    if not fits:
        expected = ", ".join(map(str, want)) if fixed_size else "H, W, " + str(want[-1])
        hint = ""
        if len(got) == len(want) + 1 and got[1] == want[-1] and got[-1] != want[-1]:
            hint = " It looks like NCHW (torch's layout): pass x.transpose(0, 2, 3, 1)."
        raise ValueError(f"{network} expects NHWC input of shape (N, {expected}), got {got}.{hint}")
    return x


class ImageInput:
    """What the registry networks of both APIs share: `input_size` and `in_channels` attributes, and whether a
    Linear layer fixes the spatial size (`fixed_size`; if not, `input_size` is only the example size used by
    summaries and tests)."""

    fixed_size = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one input image in this configuration."""
        return (*hw(self.input_size), self.in_channels)

    def check_input(self, x: jax.Array) -> jax.Array:
        """`jaxcnn.registry.check_input` of x against this network's input_shape."""
        return check_input(x, self.input_shape, self.fixed_size, type(self).__name__)


class CourseNet(ImageInput, nn.Module):
    """Base of the registry's linen networks: channels-last input, checked against `input_shape`; subclasses
    have `input_size` and `in_channels` fields and set `fixed_size` (`ImageInput`)."""
