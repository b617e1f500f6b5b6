"""The base of jaxcnn's NNX networks: NHWC input checked as the linen networks check it, and the linen twin."""

import functools
import inspect
from typing import Callable

from flax import linen, nnx

from jaxcnn.nnx._layers import Conv2d, Linear
from jaxcnn.registry import ImageInput


def _arguments(cls: type) -> list[str]:
    """The arguments of a network's __init__ but rngs: its linen twin's fields."""
    return [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "rngs")]


class CourseNet(ImageInput, nnx.Module):
    """Base of the registry's NNX networks, written as their torch originals are: `__init__` builds the layers
    as attributes under torch's names, `__call__` reads as `forward`.

    A subclass names its linen twin's class (`linen = jaxcnn.convnets.MnistCNN`) and keeps the arguments of its
    `__init__` (`self.keep(locals())`: in_channels, input_size, act, ..., the linen twin's fields) as attributes;
    `input_shape` and `check_input` are the linen networks' (`jaxcnn.registry.ImageInput`).
    """

    linen: type[linen.Module]

    def keep(self, arguments: dict) -> None:
        """Keeps each argument of `__init__` but rngs, from its `locals()`, as an attribute of the same name."""
        for name in _arguments(type(self)):
            setattr(self, name, arguments[name])


def layer_makers(weight_init: str, conv_implementation: str, rngs: nnx.Rngs) -> tuple[Callable, Callable]:
    """(Conv2d, Linear) with a network's initialisation, convolution implementation and rngs bound."""
    return (functools.partial(Conv2d, weight_init=weight_init, implementation=conv_implementation, rngs=rngs),
            functools.partial(Linear, weight_init=weight_init, rngs=rngs))


def linen_twin(net: nnx.Module) -> linen.Module:
    """The linen network that computes what the NNX network `net` computes: the same registry network, built
    with the same arguments (`jaxcnn.create_model(name, **kwargs)` for `create_model(name, api="nnx", ...)`).

    Its variables are `jaxcnn.linen_variables(net)`: `twin.apply(linen_variables(net), x)` is `net(x)` after
    `net.eval()`.

    Raises:
        TypeError: `net` is not one of jaxcnn's NNX networks (a subclass of jaxcnn.nnx.CourseNet).
    """
    if not isinstance(net, CourseNet):
        raise TypeError(f"expected one of jaxcnn's NNX networks (jaxcnn.nnx.CourseNet), got {type(net).__name__}")
    return type(net).linen(**{name: getattr(net, name) for name in _arguments(type(net))})
