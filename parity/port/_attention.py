"""Handlers of what attention blocks and the newer CNN blocks use: matmul / bmm / einsum,
scaled_dot_product_attention, expand, clone, floor division, norms (F.normalize, Tensor.norm: ConvNeXt v2's GRN),
addcmul, and what positional encodings are made of: cumsum, arange, ones / zeros / full (sizes fixed at the
example's, a batch size among them included). Each works in torch's axis order."""

import operator

import torch
import torch.nn.functional as F

from parity.port import _functions as fn
from parity.port._batch import leaves
from parity.port._emit import Unsupported, Value, handles, var_name
from parity.port._layout import Layout


def _torch_out(ctx, expr: str):
    return ctx.out(expr, Layout.same(len(ctx.result_shape())))


@handles(operator.matmul, torch.matmul, torch.bmm, methods=("matmul", "bmm", "__matmul__"))
def matmul(ctx, input, other):
    return _torch_out(ctx, f"{ctx.torch_order(input)} @ {ctx.torch_order(other)}")


@handles(torch.einsum)
def einsum(ctx, equation, *operands):
    operands = operands[0] if len(operands) == 1 and isinstance(operands[0], (list, tuple)) else operands
    return _torch_out(ctx, f"jnp.einsum({equation!r}, {', '.join(ctx.torch_order(o) for o in operands)})")


@handles(F.scaled_dot_product_attention)
def scaled_dot_product_attention(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    if dropout_p:
        raise Unsupported(f"dropout_p={dropout_p} (attention dropout in train mode)")
    if enable_gqa:
        raise Unsupported("enable_gqa=True")
    q, k, v = (ctx.torch_order(t) for t in (query, key, value))
    mask = f", attn_mask={ctx.torch_order(attn_mask)}" if isinstance(attn_mask, Value) else ""
    options = (", is_causal=True" if is_causal else "") + (f", scale={float(scale)!r}" if scale is not None else "")
    return _torch_out(ctx, f"layers.scaled_dot_product_attention({q}, {k}, {v}{mask}{options})")


@handles(methods=("expand",))
def expand(ctx, input, *sizes):
    sizes = leaves(sizes)
    x = ctx.torch_order(input)
    new = len(sizes) - input.rank
    dims = [f"{x}.shape[{i - new}]" if i >= new and (s == -1 or s == input.shape[i - new]) else ctx.size(1 + i, s)
            for i, s in enumerate(sizes)]  # kept axes follow the input (the batch stays free)
    return _torch_out(ctx, f"jnp.broadcast_to({x}, ({', '.join(dims)},))")


@handles(torch.clone, methods=("clone", "detach"))
def clone(ctx, input, memory_format=None):
    return fn._same(ctx, input)


handles(operator.floordiv, torch.floor_divide, methods=("floor_divide",))(fn._binary("//"))


def _norm_expr(x: str, p, dims, keepdim: bool) -> str:
    axis = f"axis={tuple(dims) if isinstance(dims, (list, tuple)) else dims}, keepdims={keepdim}"
    if p in (2, 2.0, "fro"):
        return f"jnp.sqrt(jnp.sum(jnp.square({x}), {axis}))"
    if p in (1, 1.0):
        return f"jnp.sum(jnp.abs({x}), {axis})"
    if isinstance(p, (int, float)) and p > 0 and p != float("inf"):
        return f"jnp.sum(jnp.abs({x}) ** {float(p)!r}, {axis}) ** {1 / float(p)!r}"
    raise Unsupported(f"p={p!r}")


@handles(torch.norm, methods=("norm",))
def norm(ctx, input, p="fro", dim=None, keepdim=False, dtype=None):
    return _torch_out(ctx, _norm_expr(ctx.torch_order(input), p, dim, keepdim))


@handles(torch.linalg.vector_norm)
def vector_norm(ctx, input, ord=2, dim=None, keepdim=False, dtype=None):
    return _torch_out(ctx, _norm_expr(ctx.torch_order(input), ord, dim, keepdim))


@handles(F.normalize)
def normalize(ctx, input, p=2.0, dim=1, eps=1e-12, out=None):
    x = ctx.torch_order(input)
    return _torch_out(ctx, f"{x} / jnp.maximum({_norm_expr(x, p, dim, True)}, {float(eps)!r})")


@handles(torch.addcmul, methods=("addcmul",))
def addcmul(ctx, input, tensor1, tensor2, value=1):
    (a, b, c), layout = fn.broadcast(ctx, [input, tensor1, tensor2])
    scale = "" if value == 1 else f"{value!r} * "
    return ctx.out(f"{a} + {scale}{b} * {c}", layout)


@handles(torch.cumsum, methods=("cumsum",))
def cumsum(ctx, input, dim, dtype=None):
    return _torch_out(ctx, f"jnp.cumsum({ctx.torch_order(input)}, axis={dim})")


@handles(torch.arange)
def arange(ctx, *args, dtype=None, device=None, layout=None, requires_grad=False, pin_memory=False, out=None):
    example = ctx.example(ctx.node.name)
    kind = "jnp.float32" if example.dtype.is_floating_point else "jnp.int32"
    return _torch_out(ctx, f"jnp.arange({', '.join(ctx.size(i, a) for i, a in enumerate(args))}, dtype={kind})")


def _factory(function: str):
    def handler(ctx, *size, fill_value=None, dtype=None, device=None, layout=None, requires_grad=False,
                pin_memory=False, out=None, memory_format=None):
        dims = [ctx.size(i, s) for i, s in enumerate(leaves(size[:1] if function == "full" else size))]
        shape = f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"
        example = ctx.example(ctx.node.name)
        kind = "jnp.float32" if example.dtype.is_floating_point else "jnp.int32" if example.dtype != torch.bool \
            else "bool"
        fill = f", {float(size[-1] if fill_value is None else fill_value)!r}" if function == "full" else ""
        return _torch_out(ctx, f"jnp.{function}({shape}{fill}, dtype={kind})")
    return handler


for _function in ("ones", "zeros", "full"):
    handles(getattr(torch, _function))(_factory(_function))


handles(torch.amax, methods=("amax",))(fn._reduce("max"))
handles(torch.amin, methods=("amin",))(fn._reduce("min"))
handles(torch.prod, methods=("prod",))(fn._reduce("prod"))


def _extreme(function: str):
    """torch.max / min: of all elements; of two tensors (element-wise); along `dim`: (values, indices)."""
    def handler(ctx, input, dim=None, keepdim=False, other=None):
        if isinstance(dim, Value) or other is not None:
            (a, b), layout = fn.broadcast(ctx, [input, dim if other is None else other])
            return ctx.out(f"jnp.{function}imum({a}, {b})", layout)
        if dim is None:
            return ctx.out(f"jnp.{function}({input.var})", Layout.same(0))
        x, name = ctx.torch_order(input), var_name(ctx.node.name)
        values, indices = ctx.example(ctx.node.name)
        keep = ", keepdims=True" if keepdim else ""
        ctx.body.append(f"{name}_values = jnp.{function}({x}, axis={dim}{keep})")
        ctx.body.append(f"{name}_indices = jnp.arg{function}({x}, axis={dim}{keep})")
        layout = Layout.same(values.ndim)
        return (Value(f"{name}_values", layout, tuple(values.shape), values.dtype),
                Value(f"{name}_indices", layout, tuple(indices.shape), indices.dtype))
    return handler


handles(torch.max, methods=("max",))(_extreme("max"))
handles(torch.min, methods=("min",))(_extreme("min"))
handles(torch.maximum)(lambda ctx, input, other: _extreme("max")(ctx, input, other=other))
handles(torch.minimum)(lambda ctx, input, other: _extreme("min")(ctx, input, other=other))


@handles(methods=("repeat",))
def repeat(ctx, input, *repeats):
    counts = [ctx.size(1 + i, r) for i, r in enumerate(leaves(repeats))]
    return _torch_out(ctx, f"jnp.tile({ctx.torch_order(input)}, ({', '.join(counts)},))")


@handles(torch.repeat_interleave, methods=("repeat_interleave",))
def repeat_interleave(ctx, input, repeats, dim=None, output_size=None):
    if not isinstance(repeats, int):
        raise Unsupported("repeats given as a tensor")
    axis = "" if dim is None else f", axis={dim}"
    return _torch_out(ctx, f"jnp.repeat({ctx.torch_order(input)}, {repeats}{axis})")
