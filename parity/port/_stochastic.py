"""Stochastic depth: torchvision.ops.stochastic_depth, timm's drop_path and efficientnet_pytorch's drop_connect (each
recorded as one node), matched by name, since none of these libraries need be importable here. It becomes a jaxcnn
StochasticDepth whose keep mask the check replays in torch, as a Dropout's."""

from parity.port._emit import Unsupported, handles
from parity.port._layout import Layout


@handles(names=("stochastic_depth",))
def stochastic_depth(ctx, input, p, mode, training=True):
    """torchvision's stochastic_depth(input, p, mode, training): on in train mode when `training` is the module's
    flag (ctx.traced.functional_dropout says 'train', 'always' or 'never')."""
    if mode not in ("row", "batch"):
        raise Unsupported(f"mode={mode!r} (torchvision takes 'row' or 'batch')")
    if not 0.0 <= float(p) <= 1.0:
        raise Unsupported(f"p={p!r} is not a probability")
    on = ctx.traced.functional_dropout[ctx.node.name]
    if on == "never" or float(p) == 0.0:
        return ctx.out(input.var, input.layout)
    module = ctx.submodule(f"<stochastic_depth {ctx.node.name}>",
                           f"layers.StochasticDepth({float(p)!r}, {mode!r})", ctx.node.name)
    # The mask is (N, 1, ..., 1) or all ones' shape: the same array in every permutation of the axes.
    ctx.dropouts[ctx.node.name] = (module.removeprefix("self."), Layout.same(input.rank))
    return ctx.out(f"{module}({input.var}, {'train' if on == 'train' else 'True'})", input.layout)


@handles(names=("drop_path",))
def drop_path(ctx, x, drop_prob=0.0, training=False, scale_by_keep=True):
    """timm's drop_path(x, drop_prob, training, scale_by_keep): stochastic_depth's 'row' mode."""
    if not scale_by_keep and float(drop_prob) > 0.0:
        raise Unsupported("scale_by_keep=False (the kept rows not scaled by 1 / keep)")
    return stochastic_depth(ctx, x, drop_prob, "row", training)


@handles(names=("drop_connect",))
def drop_connect(ctx, inputs, p, training):
    """efficientnet_pytorch's drop_connect(inputs, p, training): stochastic_depth's 'row' mode."""
    return stochastic_depth(ctx, inputs, p, "row", training)
