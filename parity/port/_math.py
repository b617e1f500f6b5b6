"""Handlers of element-wise math: pow (and `**`), sqrt, rsqrt, exp, log, abs, square, sin, cos, clamp / clip, and the
activations mish and hardtanh (functions and modules). Any layout goes through unchanged."""

import operator

import torch
import torch.nn.functional as F
from torch import nn

from parity.port import _functions as fn
from parity.port._emit import Context, Unsupported, Value, handles


def _unary(template: str):
    def handler(ctx, input):
        return ctx.out(template.format(input.var), input.layout)
    return handler


for _name, _template in {"sqrt": "jnp.sqrt({})", "rsqrt": "jax.lax.rsqrt({})", "exp": "jnp.exp({})",
                         "log": "jnp.log({})", "abs": "jnp.abs({})", "square": "jnp.square({})",
                         "sin": "jnp.sin({})", "cos": "jnp.cos({})"}.items():
    handles(getattr(torch, _name), methods=(_name,))(_unary(_template))
handles(operator.abs, torch.absolute, methods=("absolute",))(_unary("jnp.abs({})"))


@handles(operator.pow, torch.pow, methods=("pow",))
def pow(ctx, input, exponent):
    """`input ** exponent`, either a tensor or a number (a Python int stays one: jnp's integer power, as
    torch's multiplications for small integer exponents)."""
    (a, b), layout = fn.broadcast(ctx, [input, exponent])
    return ctx.out(f"{a} ** {b}", layout)


def clamped(ctx: Context, input: Value, low, high) -> Value:
    """jnp.clip(input, low, high); a bound may be None, a number or a tensor."""
    if low is None and high is None:
        raise Unsupported("clamp with neither min nor max")
    bounds = [b for b in (low, high) if b is not None]
    exprs, layout = fn.broadcast(ctx, [input, *bounds])
    parts, rest = [exprs[0]], iter(exprs[1:])
    for key, bound in (("min", low), ("max", high)):
        if bound is not None:
            parts.append(f"{key}={next(rest)}")
    return ctx.out(f"jnp.clip({', '.join(parts)})", layout)


@handles(torch.clamp, torch.clip, methods=("clamp", "clip"))
def clamp(ctx, input, min=None, max=None):
    return clamped(ctx, input, min, max)


@handles(torch.clamp_min, methods=("clamp_min",))
def clamp_min(ctx, input, min):
    return clamped(ctx, input, min, None)


@handles(torch.clamp_max, methods=("clamp_max",))
def clamp_max(ctx, input, max):
    return clamped(ctx, input, None, max)


@handles(F.hardtanh)
def hardtanh(ctx, input, min_val=-1.0, max_val=1.0, inplace=False):
    return clamped(ctx, input, float(min_val), float(max_val))


@handles(F.mish)
def mish(ctx, input, inplace=False):
    return ctx.out(f"{input.var} * jnp.tanh(jax.nn.softplus({input.var}))", input.layout)


@handles(nn.Mish)
def mish_module(ctx, m, input):
    return mish(ctx, input)


@handles(nn.Hardtanh)
def hardtanh_module(ctx, m, input):
    return hardtanh(ctx, input, m.min_val, m.max_val)
