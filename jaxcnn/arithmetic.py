"""Convolution arithmetic of the course (notebooks 000-002), per spatial axis.

Every function takes ints or per-axis tuples and answers in kind: ints in, an
int out; any tuple in, a tuple out (ints are repeated over the axes).
"""

import math
from typing import Sequence, Union

IntOrTuple = Union[int, Sequence[int]]


def _per_axis(*values: IntOrTuple) -> tuple[list[tuple[int, ...]], bool]:
    """Broadcasts ints against tuples; returns the per-axis columns and whether any was a tuple."""
    lengths = {len(v) for v in values if not isinstance(v, int)}
    if len(lengths) > 1:
        raise ValueError(f"per-axis tuples of different lengths: {values}")
    n = next(iter(lengths), 1)
    cols = [tuple(v) if not isinstance(v, int) else (v,) * n for v in values]
    return [tuple(int(c[i]) for c in cols) for i in range(n)], any(not isinstance(v, int) for v in values)


def _answer(results: list[int], as_tuple: bool) -> IntOrTuple:
    return tuple(results) if as_tuple else results[0]


def conv_output_size(n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, p: IntOrTuple = 0, d: IntOrTuple = 1) -> IntOrTuple:
    """Output length of a convolution: floor((n + 2p - d*(k-1) - 1) / s) + 1 (000's `conv_calc`).

    Raises ValueError when the (padded) input is shorter than the dilated kernel.
    """
    axes, as_tuple = _per_axis(n, k, s, p, d)
    out = []
    for n_, k_, s_, p_, d_ in axes:
        if s_ < 1 or k_ < 1 or d_ < 1 or p_ < 0:
            raise ValueError(f"need k, s, d >= 1 and p >= 0, got k={k_}, s={s_}, p={p_}, d={d_}")
        span = d_ * (k_ - 1) + 1
        if n_ + 2 * p_ < span:
            raise ValueError(f"input of length {n_} with padding {p_} is shorter than the kernel span {span} (k={k_}, d={d_})")
        out.append((n_ + 2 * p_ - span) // s_ + 1)
    return _answer(out, as_tuple)


def pool_output_size(n: IntOrTuple, k: IntOrTuple, s: IntOrTuple | None = None, p: IntOrTuple = 0,
                     d: IntOrTuple = 1, ceil_mode: bool = False) -> IntOrTuple:
    """Output length of torch's MaxPool/AvgPool (stride defaults to the kernel size).

    With ceil_mode the last window may run past the input, but never starts in
    the right padding (torch drops such a window).
    """
    s = k if s is None else s
    axes, as_tuple = _per_axis(n, k, s, p, d)
    out = []
    for n_, k_, s_, p_, d_ in axes:
        span = d_ * (k_ - 1) + 1
        if n_ + 2 * p_ < span:
            raise ValueError(f"input of length {n_} with padding {p_} is shorter than the pooling window {span}")
        num = n_ + 2 * p_ - span
        o = (-(-num // s_) if ceil_mode else num // s_) + 1
        if ceil_mode and (o - 1) * s_ >= n_ + p_:
            o -= 1
        out.append(o)
    return _answer(out, as_tuple)


def padding_for(wanted_out: IntOrTuple, n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, d: IntOrTuple = 1) -> IntOrTuple:
    """The smallest symmetric padding p with conv_output_size(n, k, s, p, d) == wanted_out.

    Notebook 002, question 5: padding_for((8, 16), (8, 16), 3) == (1, 1).
    Raises ValueError when no symmetric padding gives that size.
    """
    axes, as_tuple = _per_axis(wanted_out, n, k, s, d)
    out = []
    for want, n_, k_, s_, d_ in axes:
        p = max(0, math.ceil(((want - 1) * s_ + d_ * (k_ - 1) + 1 - n_) / 2))
        got = conv_output_size(n_, k_, s_, p, d_)
        if got != want:
            raise ValueError(f"no symmetric padding turns length {n_} into {want} with k={k_}, s={s_}, d={d_} "
                             f"(the smallest padding that reaches it, p={p}, gives {got})")
        out.append(p)
    return _answer(out, as_tuple)


def conv_params(in_channels: int, out_channels: int, k: IntOrTuple, bias: bool = True, groups: int = 1,
                spatial_dims: int = 2) -> int:
    """Trainable parameters of a convolution: C_out * (C_in/groups * prod(k) + bias).

    An int k is square (cubic...) over `spatial_dims` axes, as in torch's Conv2d(..., 5).
    """
    ks = (k,) * spatial_dims if isinstance(k, int) else tuple(k)
    return out_channels * (in_channels // groups * math.prod(ks) + int(bias))
