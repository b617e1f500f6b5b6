"""Handlers of dtype and device changes (Tensor.to, float, long, bool, type_as: a device is ignored, float64 and
int64 become JAX's float32 and int32 where 64-bit types are off), boolean logic (~, &, |) and torch.div's rounding
modes."""

import operator

import torch

from parity.port import _functions as fn
from parity.port._emit import Unsupported, Value, handles

_JNP = {torch.float32: "jnp.float32", torch.float64: "jnp.float32", torch.float16: "jnp.float16",
        torch.bfloat16: "jnp.bfloat16", torch.int64: "jnp.int32", torch.int32: "jnp.int32", torch.int16: "jnp.int16",
        torch.int8: "jnp.int8", torch.uint8: "jnp.uint8", torch.bool: "bool"}


def _cast(ctx, input: Value, dtype) -> Value:
    if dtype is None or dtype == input.dtype:
        return fn._same(ctx, input)
    if dtype not in _JNP:
        raise Unsupported(f"dtype {dtype}")
    return ctx.out(f"{input.var}.astype({_JNP[dtype]})", input.layout)


@handles(methods=("to",))
def to(ctx, input, *args, dtype=None, device=None, non_blocking=False, copy=False, memory_format=None):
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, Value):
            dtype = arg.dtype
        elif not isinstance(arg, (str, torch.device)):
            raise Unsupported(f"to({arg!r})")
    return _cast(ctx, input, dtype)


for _method, _dtype in {"float": torch.float32, "double": torch.float64, "half": torch.float16,
                        "bfloat16": torch.bfloat16, "long": torch.int64, "int": torch.int32,
                        "bool": torch.bool}.items():
    handles(methods=(_method,))(lambda ctx, input, memory_format=None, _dtype=_dtype: _cast(ctx, input, _dtype))


@handles(methods=("type_as",))
def type_as(ctx, input, other):
    return _cast(ctx, input, other.dtype)


@handles(operator.invert, torch.logical_not, methods=("logical_not", "bitwise_not"))
def invert(ctx, input):
    return ctx.out(f"~{input.var}" if input.dtype == torch.bool else f"jnp.invert({input.var})", input.layout)


handles(operator.and_, torch.logical_and, methods=("logical_and",))(fn._binary("&"))
handles(operator.or_, torch.logical_or, methods=("logical_or",))(fn._binary("|"))
