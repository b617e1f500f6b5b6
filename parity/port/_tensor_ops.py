"""Handlers that reshuffle tensors: permute and transpose (relabels of the layout: the same array, its axes read
anew), indexing, chunk / split / unbind (tuples of Values), stack, squeeze / unsqueeze, and reshapes that keep
each group of merged or split axes where the layout holds it (flatten(2), ShuffleNet's channel groups).

Overrides _functions' view / reshape / flatten handlers (it is imported first): same results, fewer transposes.
"""

import operator

import torch

from parity.port import _functions as fn
from parity.port._emit import Context, Unsupported, Value, handles, var_name
from parity.port._layout import Layout


def _unflat(ctx: Context, value: Value) -> Value:
    """`value` with a permutation layout (a flattened channels-last one converted to torch's order)."""
    if value.layout.flat_from is None:
        return value
    return Value(ctx.torch_order(value), Layout.same(value.rank), value.shape, value.dtype)


def _dims(dims: tuple) -> list[int]:
    return list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (list, tuple, torch.Size)) else list(dims)


def permuted(ctx: Context, value: Value, dims) -> Value:
    """torch's `value.permute(dims)`: the same Flax array, each of its axes now holding torch axis dims.index(old)."""
    value = _unflat(ctx, value)
    dims = [d % value.rank for d in dims]
    if sorted(dims) != list(range(value.rank)):
        raise Unsupported(f"dims {dims} are not a permutation of {value.rank} axes")
    return ctx.out(value.var, Layout(tuple(dims.index(p) for p in value.layout.perm)))


@handles(methods=("permute",))
def permute_method(ctx, input, *dims):
    return permuted(ctx, input, _dims(dims))


@handles(torch.permute)
def permute(ctx, input, dims):
    return permuted(ctx, input, dims)


@handles(torch.transpose, torch.swapaxes, torch.swapdims, methods=("transpose", "swapaxes", "swapdims"))
def transpose(ctx, input, dim0, dim1):
    dims = list(range(input.rank))
    dims[dim0 % input.rank], dims[dim1 % input.rank] = dims[dim1 % input.rank], dims[dim0 % input.rank]
    return permuted(ctx, input, dims)


@handles(torch.t, methods=("t",))
def t(ctx, input):
    return permuted(ctx, input, list(range(input.rank))[::-1])


# -- indexing ----------------------------------------------------------------------------------------------------
def _place(kept: list[int], new: list[int], rank: int, prefer_channels_last: bool) -> tuple[int, ...]:
    """A layout (perm) of `rank` axes whose kept axes run in the order `kept` and whose new size-1 axes `new`
    go where channels-last or torch's order wants them (else last)."""
    candidates = [Layout.channels_last(rank).perm, Layout.same(rank).perm]
    for perm in candidates if prefer_channels_last else candidates[::-1]:
        if [p for p in perm if p not in new] == kept:
            return perm
    return tuple(kept + new)


def _slice_text(item) -> str:
    if isinstance(item, int):
        return str(item)
    if item is None:
        return "None"
    text = f"{'' if item.start is None else item.start}:{'' if item.stop is None else item.stop}"
    return text + (f":{item.step}" if item.step not in (None, 1) else "")


def indexed(ctx: Context, value: Value, items: list) -> Value:
    """`value[items]` for basic torch indexing: `items` has one int or slice per torch axis, None for a new one."""
    return ctx.out(*_index(ctx, value, items))


def _index(ctx: Context, value: Value, items: list) -> tuple[str, Layout]:
    """(the expression of `value[items]` on the array as held, the result's layout)."""
    value = _unflat(ctx, value)
    per_dim, out_of, new, d = {}, {}, [], 0
    for item in items:
        if item is None:
            new.append(len(out_of) + len(new))
            continue
        per_dim[d] = item
        if not isinstance(item, int):
            out_of[d] = len(out_of) + len(new)
        d += 1
    kept = [out_of[p] for p in value.layout.perm if p in out_of]
    perm = _place(kept, new, len(out_of) + len(new), not value.var.startswith("self."))
    texts, position = [], 0
    for p in value.layout.perm:
        if not isinstance(per_dim[p], int):
            while perm[position] in new:
                texts, position = texts + ["None"], position + 1
            position += 1
        texts.append(_slice_text(per_dim[p]))
    texts += ["None"] * (len(perm) - position)
    while texts and texts[-1] == ":":
        texts.pop()
    return (f"{value.var}[{', '.join(texts)}]" if texts else value.var), Layout(perm)


def _items(value: Value, index) -> list:
    index = list(index) if isinstance(index, tuple) else [index]
    for item in index:
        bounds = (item.start, item.stop, item.step) if isinstance(item, slice) else ()
        if not all(v is None or isinstance(v, int) for v in bounds):
            raise Unsupported(f"a slice of other than integers ({item})")
        if isinstance(item, slice) and item.step is not None and item.step <= 0:
            raise Unsupported(f"a slice with step {item.step}")
        if not (item is None or item is Ellipsis or isinstance(item, (int, slice))) or isinstance(item, bool):
            raise Unsupported(f"an index {item!r}")
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if index.count(Ellipsis) > 1 or used > value.rank:
        raise Unsupported(f"index {index} for a {value.rank}-D tensor")
    at = index.index(Ellipsis) if Ellipsis in index else len(index)
    return index[:at] + [slice(None)] * (value.rank - used) + index[at + 1:]


def _advanced(ctx: Context, value: Value, index: tuple) -> Value:
    """`value[index]` where integer tensors or lists index (an attention bias gathered by a table of positions, a
    permutation): in torch's axis order, where numpy's rules, which JAX follows, are torch's."""
    texts = []
    for item in index:
        if isinstance(item, Value):
            if item.dtype == torch.bool or item.dtype.is_floating_point:
                raise Unsupported("indexing with a boolean mask (its result's size depends on the values)")
            texts.append(ctx.torch_order(item))
        elif isinstance(item, list):
            texts.append(f"jnp.array({item})")
        else:
            texts.append("..." if item is Ellipsis else _slice_text(item))
    return ctx.out(f"{ctx.torch_order(value)}[{', '.join(texts)}]", Layout.same(len(ctx.result_shape())))


@handles(operator.getitem)
def getitem(ctx, obj, index):
    """A tuple's element (chunk, split, a submodule's outputs: the Value itself) or tensor indexing."""
    if isinstance(obj, (tuple, list)):
        return obj[index]
    if not isinstance(obj, Value):
        raise Unsupported(f"indexing a {type(obj).__name__}")
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(item, Value) or isinstance(item, list) and all(type(i) is int for i in item) for item in items):
        return _advanced(ctx, obj, items)
    return indexed(ctx, obj, _items(obj, index))


@handles(torch.squeeze, methods=("squeeze",))
def squeeze(ctx, input, dim=None):
    dims = range(input.rank) if dim is None else [dim] if isinstance(dim, int) else dim
    gone = {d % input.rank for d in dims if input.shape[d] == 1}
    return indexed(ctx, input, [0 if d in gone else slice(None) for d in range(input.rank)])


@handles(torch.unsqueeze, methods=("unsqueeze",))
def unsqueeze(ctx, input, dim):
    d = dim % (input.rank + 1)
    return indexed(ctx, input, [slice(None)] * d + [None] + [slice(None)] * (input.rank - d))


# -- tuples of tensors -------------------------------------------------------------------------------------------
def pieces(ctx: Context, value: Value, dim: int, keep_dim: bool) -> tuple[Value, ...]:
    """The node's tuple of tensors: consecutive pieces of `value` along torch's `dim` (sizes from the example),
    each `<node>_piece<i> = value[...]`; unbind's (keep_dim False) without that axis."""
    dim = dim % value.rank
    values, start = [], 0
    for i, example in enumerate(ctx.example(ctx.node.name)):
        size = example.shape[dim] if keep_dim else 1
        item = slice(start, start + size) if keep_dim else start
        expr, layout = _index(ctx, value, [slice(None)] * dim + [item] + [slice(None)] * (value.rank - dim - 1))
        name = f"{var_name(ctx.node.name)}_piece{i}"
        ctx.body.append(f"{name} = {expr}")
        values.append(Value(name, layout, tuple(example.shape), example.dtype))
        start += size
    return tuple(values)


@handles(torch.chunk, methods=("chunk",))
def chunk(ctx, input, chunks, dim=0):
    return pieces(ctx, input, dim, True)


@handles(torch.split, methods=("split",))
def split(ctx, input, split_size_or_sections, dim=0):
    return pieces(ctx, input, dim, True)


@handles(torch.unbind, methods=("unbind",))
def unbind(ctx, input, dim=0):
    return pieces(ctx, input, dim, False)


@handles(torch.stack)
def stack(ctx, tensors, dim=0, out=None):
    first = tensors[0].layout
    target = first if first.flat_from is None else Layout.same(first.rank)
    d = dim % (target.rank + 1)
    perm = _place([p + (p >= d) for p in target.perm], [d], target.rank + 1, True)
    names = ", ".join(ctx.convert(v, target) for v in tensors)
    return ctx.out(f"jnp.stack([{names}], axis={perm.index(d)})", Layout(perm))


# -- reshapes ----------------------------------------------------------------------------------------------------
def _groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """The reshape src -> dst as (src axes, dst axes) groups of equal size, in order; a size-1 axis at a group's
    start is a group of its own (dropped: no dst axes; new: no src axes)."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        if i < len(src) and src[i] == 1:
            groups, i = groups + [([i], [])], i + 1
        elif j < len(dst) and dst[j] == 1:
            groups, j = groups + [([], [j])], j + 1
        else:
            a, b, size_a, size_b, i, j = [i], [j], src[i], dst[j], i + 1, j + 1
            while size_a != size_b:
                if size_a < size_b:
                    a, size_a, i = a + [i], size_a * src[i], i + 1
                else:
                    b, size_b, j = b + [j], size_b * dst[j], j + 1
            groups.append((a, b))
    return groups


def reshaped(ctx: Context, value: Value) -> Value:
    """A reshape to the node's example shape that works on the array as held: each group of torch axes merged
    or split stays where the layout holds it (transposed together first where it is not held in order)."""
    shape = ctx.result_shape()
    keeps_batch = bool(shape) and bool(value.shape) and shape[0] == value.shape[0]
    if value.layout.flat_from is not None or 0 in shape or 0 in value.shape or shape == value.shape or (
            value.rank >= 3 and value.layout == Layout.channels_last(value.rank) and len(shape) == 2 and keeps_batch):
        return fn.reshape_to_result(ctx, value)  # the flatten into a Linear keeps its (*spatial, C) order
    perm = value.layout.perm
    groups = [g for g in _groups(value.shape, shape) if g[0]]
    groups.sort(key=lambda g: min(perm.index(a) for a in g[0]))
    order = [a for src, _ in groups for a in src]
    var = value.var
    if order != list(perm):
        var = f"jnp.transpose({var}, {tuple(perm.index(a) for a in order)})"
    kept = [b for _, dst in groups for b in dst]
    new = [j for j in range(len(shape)) if j not in kept]
    out = _place(kept, new, len(shape), not value.var.startswith("self."))
    batch = ([0], [0]) in groups and keeps_batch
    # torch axis 0 where the batch is merged or split with other axes ((N, C, H, W) -> (N * heads, d, H * W)): -1,
    # which is the example's size at its batch, and follows the batch at any other
    dims = [f"{value.var}.shape[{perm.index(0)}]" if batch and p == 0 else "-1" if p == 0 else str(shape[p])
            for p in out]
    return ctx.out(f"{var}.reshape({', '.join(dims)}{',' if len(dims) == 1 else ''})", Layout(out))


@handles(methods=("view", "reshape"))
def view(ctx, input, *shape):
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise Unsupported("view(dtype)")
    return reshaped(ctx, input)


@handles(torch.reshape)
def reshape(ctx, input, shape):
    return reshaped(ctx, input)


@handles(torch.flatten, methods=("flatten",))
def flatten(ctx, input, start_dim=0, end_dim=-1):
    return reshaped(ctx, input)


@handles(methods=("view_as", "reshape_as"))
def view_as(ctx, input, other):
    return reshaped(ctx, input)

