"""parity.port on the operations of modern CNNs: permutes as layout relabels (ConvNeXt), channel shuffles,
chunk / split / unbind / stack / indexing, LayerNorm, GroupNorm, PReLU, Mish, element-wise math, interpolate,
pad, layer scales and stochastic depth; each network ported and proven by parity.port.check."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.fx
import torch.nn.functional as F
from flax.traverse_util import flatten_dict
from torch import nn

from jaxcnn import layers
from parity import port


def stochastic_depth(input, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth, as torchvision writes it (torchvision itself is not imported here)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, input):
        return stochastic_depth(input, self.p, self.mode, self.training)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """torchvision's ConvNeXt block: a (C, 1, 1) layer scale after permuting back, stochastic depth."""

    def __init__(self, dim, p=0.0):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), Permute([0, 2, 3, 1]),
                                   nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)
        self.stochastic_depth = StochasticDepth(p, "row")

    def forward(self, input):
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


class ConvNeXtBlock(nn.Module):
    """The original ConvNeXt block: x.permute(0, 2, 3, 1), a (C,) gamma in channels-last, permute back."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + x


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtTiny(nn.Module):
    def __init__(self, p=0.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, stride=2), LayerNorm2d(8, eps=1e-6))
        self.stages = nn.Sequential(CNBlock(8, p), ConvNeXtBlock(8))
        self.head = nn.Sequential(LayerNorm2d(8), nn.Flatten(1), nn.Linear(8 * 4 * 4, 5))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def channel_shuffle(x, groups: int):
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual, stride 1; a ReLU after the depthwise BatchNorm (torchvision
    has none there: then the last BatchNorm's batch means are 0 but for rounding, which no relative check judges)."""

    def __init__(self, c):
        super().__init__()
        half = c // 2
        self.branch2 = nn.Sequential(nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
                                     nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
                                     nn.BatchNorm2d(half), nn.ReLU(), nn.Conv2d(half, half, 1, bias=False),
                                     nn.BatchNorm2d(half), nn.ReLU())

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.unit = ShuffleUnit(8)
        self.conv2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.conv2(self.unit(self.conv1(x)))


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.SiLU(), nn.Sigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class MBConv(nn.Module):
    """torchvision's EfficientNet MBConv: expand, depthwise, squeeze-excitation, project, stochastic depth."""

    def __init__(self, c, p):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c), nn.SiLU(),
                                   nn.Conv2d(4 * c, 4 * c, 3, padding=1, groups=4 * c, bias=False),
                                   nn.BatchNorm2d(4 * c), nn.SiLU(), SqueezeExcitation(4 * c, 2),
                                   nn.Conv2d(4 * c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.stochastic_depth = StochasticDepth(p, "row")

    def forward(self, input):
        return self.stochastic_depth(self.block(input)) + input


class DenseBlock(nn.Module):
    """DenseNet's: each layer sees the concatenation of all features before it."""

    def __init__(self, c, growth, n):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(),
                                                  nn.Conv2d(c + i * growth, growth, 3, padding=1, bias=False))
                                    for i in range(n))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class TransformInput(nn.Module):
    """Inception v3's transform_input, then a convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5, 1)
        x_ch2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return self.conv(torch.cat((x_ch0, x_ch1, x_ch2), 1))


def _check(module, shape, seed=1):
    torch.manual_seed(0)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source
    return ported, report


def _call(source: str) -> str:
    return "\n".join(part.split("TORCH_WEIGHTS")[0] for part in source.split("def __call__")[1:])


def test_convnext_blocks_permute_by_relabelling_and_transpose_nothing():
    torch.manual_seed(0)
    ported, report = _check(ConvNeXtTiny(), (2, 3, 8, 8))
    assert "transpose" not in _call(ported.source) and "moveaxis" not in _call(ported.source)
    assert "layers.LayerNorm((8,), eps=1e-06)" in ported.source and "layers.layer_norm(" in ported.source


def test_convnext_stochastic_depth_replays_in_train_mode():
    torch.manual_seed(0)
    ported, report = _check(ConvNeXtTiny(p=0.5), (8, 3, 8, 8))
    assert {"forward (train)", "gradients (train)"} <= set(report.verdicts)


def test_channel_shuffle_transposes_only_the_channel_groups():
    torch.manual_seed(0)
    ported, report = _check(ShuffleNetTiny(), (2, 4, 8, 8))
    assert "batch statistics (train)" in report.verdicts
    call = _call(ported.source)
    assert call.count("jnp.transpose(") == 1 and "(0, 1, 2, 4, 3)" in call, call


def test_mbconv_squeeze_excitation_and_stochastic_depth():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), MBConv(4, 0.5))
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    ported = port.build(module, x, api="linen")
    assert "layers.StochasticDepth(0.5, 'row')" in ported.source
    x_cl = np.moveaxis(x, 1, -1)
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ported.module.apply(ported.variables, x_cl), np.moveaxis(expected, 1, -1),
                               atol=1e-5, rtol=1e-5)  # eval: the identity
    _, new = ported.module.apply(ported.variables, x_cl, train=True, mutable=["batch_stats", "intermediates"],
                                 rngs={"dropout": jax.random.key(0)})
    (keep,) = [v for k, v in flatten_dict(new["intermediates"]).items() if k[-1] == "keep"]
    assert keep[0].shape == (8, 1, 1, 1) and 0 < int(np.sum(keep[0])) < 8  # some samples dropped, not all
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok and "forward (train)" in report.verdicts, report.table()


def test_stochastic_depth_batch_mode_and_an_always_on_call():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)

        def forward(self, x):
            y = self.conv(x)
            return stochastic_depth(y, 0.5, "batch", self.training) + stochastic_depth(y, 0.25, "row", False)

    ported, report = _check(Net(), (4, 2, 6, 6))
    assert "forward (train)" in report.verdicts and ported.source.count("layers.StochasticDepth(") == 1


def test_dense_block_concatenates_features():
    ported, _ = _check(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), DenseBlock(4, 2, 3)), (2, 3, 8, 8))
    assert "transpose" not in _call(ported.source)


def test_inception_transform_input_indexes_channels_without_transposing():
    ported, _ = _check(TransformInput(), (2, 3, 8, 8))
    assert "transpose" not in _call(ported.source)


class Reshuffles(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.alpha = nn.Parameter(torch.tensor(0.7))
        self.scale = nn.Parameter(torch.rand(6, 1, 1) + 0.5)

    def forward(self, x):
        y = self.conv(x) * self.alpha
        a, b, c = y.chunk(3, dim=1)
        d, e = torch.split(y, [2, 4], dim=1)
        f, g = y.split(4, 1)
        rows = y.unbind(2)
        s = torch.stack(rows[:3], dim=2) + torch.stack(torch.unbind(y, -1)[1:4], -1).transpose(2, 3)
        h = y.flatten(2).transpose(1, 2)  # (N, H*W, C)
        i = y.swapaxes(1, 3).reshape(y.shape[0], -1, 6)  # (N, W*H, C)
        j = y[..., None].squeeze(-1)[:, :, 1:-1, ::2] * self.scale
        k = y[:, 2].unsqueeze(1) + y[:, -1:] + y[0:1, 1, 2:3, None]
        t = y.permute(0, 2, 3, 1) * 2 + y.transpose(1, 2).mean(1)[:, None].permute(0, 1, 3, 2)
        return (a * b + c, d.sum(1, keepdim=True) * e, f.mean(1) + g.mean(1),
                s, h.softmax(-1), i, j, k, t, torch.flatten(t, 1, 2), y.view(-1, 3, 2, 8, 8).sum(2))


def test_chunk_split_unbind_stack_indexing_and_reshapes():
    _check(Reshuffles(), (2, 3, 8, 8))


class ChannelsFirstLayerNorm(nn.Module):
    """The original ConvNeXt's channels_first LayerNorm, written out of means, pow and sqrt."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.randn(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.gn_plain = nn.GroupNorm(2, 8, eps=1e-3, affine=False)
        self.ln = nn.LayerNorm([8, 8], elementwise_affine=True)
        self.ln_chw = nn.LayerNorm([8, 8, 8], bias=False)
        self.cf = ChannelsFirstLayerNorm(8)
        self.w = nn.Parameter(torch.rand(8) + 0.5)

    def forward(self, x):
        y = self.conv(x)
        return (self.gn(y), self.gn_plain(y) + F.group_norm(y, 2, self.w, None), self.ln(y), self.ln_chw(y),
                self.cf(y), F.layer_norm(y, [8], None, None, 1e-4))


def test_layer_norm_and_group_norm():
    _check(Norms(), (2, 3, 8, 8))


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.prelu, self.prelu1 = nn.PReLU(4, init=0.1), nn.PReLU()
        self.mish, self.hardtanh = nn.Mish(), nn.Hardtanh(-0.5, 0.8)
        self.prelu1.weight.data.fill_(0.3)
        self.slopes = nn.Parameter(torch.rand(4))

    def forward(self, x):
        y = self.conv(x)
        return (self.prelu(y) + self.prelu1(y) + F.prelu(y, self.slopes), self.mish(y) + F.mish(y),
                self.hardtanh(y) + F.hardtanh(y), F.silu(y) + F.hardswish(y))


def test_prelu_mish_hardtanh():
    ported, report = _check(Activations(), (2, 3, 8, 8))
    assert "layers.PReLU(4, init=0.1)" in ported.source


class Arithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        a = y.abs() + 0.5
        return (torch.sqrt(a) + a.rsqrt() + torch.log(a) + torch.exp(-a) + a.exp() + a.log(),
                a ** 2 + torch.pow(a, 0.5) + a.pow(y.clamp(-1, 1)) + 2 ** y + a.sqrt() + torch.rsqrt(a),
                y.clamp(min=-0.5) + torch.clamp(y, max=0.3) + y.clip(-0.2, 0.2) + torch.clamp(y, y * 0.5, a),
                torch.square(y) + torch.abs(y) + (-y).neg() + y.clamp_min(0.1) + y.clamp_max(0.1))


def test_pow_sqrt_rsqrt_exp_log_clamp_abs():
    _check(Arithmetic(), (2, 3, 8, 8))


class Resampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up_corners = nn.UpsamplingBilinear2d(size=(9, 11))
        self.up_nearest = nn.UpsamplingNearest2d(scale_factor=3)
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.reflect = nn.ReflectionPad2d(1)

    def forward(self, x):
        y = self.conv(x)  # (N, 4, 6, 6)
        return (self.up(y), self.up_corners(y), self.up_nearest(y),
                F.interpolate(y, size=(7, 13), mode="nearest"), F.interpolate(y, scale_factor=1.5, mode="bilinear"),
                F.interpolate(y, scale_factor=(0.5, 2.5), mode="bilinear", align_corners=True),
                F.interpolate(y, size=5, mode="nearest-exact"),
                F.pad(y, (1, 2, 0, 3), value=0.5), F.pad(y, (1, 1, 2, 0), mode="reflect"),
                F.pad(y, [2, 1, 1, 0], mode="replicate"), F.pad(y, (-1, 1, 0, 0, 1, 1)), self.pad(y), self.reflect(y),
                F.pad(y.permute(0, 2, 3, 1), (1, 2)))


def test_interpolate_upsample_and_pad():
    _check(Resampling(), (2, 3, 8, 8))


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("nearest-exact", None), ("bilinear", False),
                                                 ("bilinear", True)])
def test_interpolate_follows_torch_index_arithmetic(mode, align_corners):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 5)).astype(np.float32)
    x_cl = jnp.asarray(np.moveaxis(x, 1, -1))
    for kw in [dict(size=(s, 3)) for s in (1, 3, 7, 13, 14, 20)] + [
            dict(scale_factor=f) for f in (0.5, 0.7, 1.1, 2.0, 2.1, 2.5, 1 / 3)] + [
            dict(scale_factor=1.7, recompute_scale_factor=True)]:
        theirs = F.interpolate(torch.from_numpy(x).double(), mode=mode, align_corners=align_corners, **kw).numpy()
        ours = np.moveaxis(np.asarray(layers.interpolate(x_cl, mode=mode, align_corners=align_corners, **kw)), -1, 1)
        assert ours.shape == theirs.shape, kw
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=0 if mode.startswith("nearest") else 1e-5,
                                   err_msg=str(kw))


def test_supported_lists_the_new_operations():
    supported = port.supported()
    for module in ("LayerNorm", "GroupNorm", "PReLU", "Mish", "Hardtanh", "Upsample", "UpsamplingNearest2d",
                   "UpsamplingBilinear2d", "ZeroPad2d", "ReflectionPad2d", "ReplicationPad2d", "ConstantPad2d"):
        assert f"nn.{module}" in supported["modules"]
    for function in ("torch.permute", "torch.transpose", "torch.chunk", "torch.unbind", "torch.stack",
                     "torch.squeeze", "torch.unsqueeze", "operator.getitem", "torch.pow", "torch.sqrt",
                     "torch.rsqrt", "torch.exp", "torch.log", "torch.clamp", "torch.abs",
                     "torch.nn.functional.layer_norm", "torch.nn.functional.group_norm",
                     "torch.nn.functional.interpolate", "torch.nn.functional.pad", "torch.nn.functional.mish",
                     "stochastic_depth"):
        assert function in supported["functions"], function
    for method in ("permute", "transpose", "swapaxes", "chunk", "split", "unbind", "squeeze", "unsqueeze", "pow",
                   "sqrt", "rsqrt", "exp", "log", "clamp", "clip", "abs"):
        assert f"Tensor.{method}" in supported["methods"]


# -- Python that reads shapes, and the functional forms of layers with weights (timm's style) ----------------------
class BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: F.batch_norm on its own statistics (counting batches in train mode), an activation."""

    def __init__(self, channels):
        super().__init__(channels)
        self.act = nn.SiLU()

    def forward(self, x):
        if self.training:
            self.num_batches_tracked.add_(1)
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum, self.eps)
        return self.act(x)


class SamePadConv(nn.Conv2d):
    """timm's Conv2dSame: TensorFlow's 'same' padding, computed from the input's size, then F.conv2d."""

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads = [total // 2, total - total // 2] + pads
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class StdConv(nn.Conv2d):
    """Weight standardisation (timm's StdConv2d): the kernel normalised per output channel in forward."""

    def forward(self, x):
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Head(nn.Module):
    """A head with a Python keyword default (timm's `forward(x, pre_logits=False)`) and F.linear on a child's weights."""

    def __init__(self, channels, classes):
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x, pre_logits: bool = False):
        x = x.mean((2, 3))
        return x if pre_logits else F.linear(x, self.fc.weight, self.fc.bias)


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor | None = None


class ReadsShapes(nn.Module):
    """Checks its input's channels, builds a module in forward, runs a forward bound in __init__, returns a dataclass."""

    def __init__(self):
        super().__init__()
        self.conv = SamePadConv(3, 8, 3, stride=2)
        self.bn = BatchNormAct(8)
        self.std = StdConv(8, 6, 3, padding=1, bias=False)
        self.head = Head(6, 5)
        self.forward = self.forward_checked

    def forward_checked(self, x):
        if x.shape[1] != 3:
            raise ValueError(f"expected 3 channels, got {x.shape[1]}")
        x = nn.ZeroPad2d((1, 0, 1, 0))(x)
        x = self.std(self.bn(self.conv(x)))
        return Output(self.head(x), None)


def test_python_that_reads_shapes_and_functional_layers_port_in_both_modes():
    ported, report = _check(ReadsShapes(), (4, 3, 9, 10))
    assert {"forward (train)", "batch statistics (train)"} <= set(report.verdicts)
    compile(ported.source, "model.py", "exec")
    assert "layers.BatchNorm(8)" in ported.source and "layers.normalize_over_batch(" in ported.source
    assert "layers.Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), rngs=rngs)" in ported.source
    keys = {row[0] for row in type(ported.module).TORCH_WEIGHTS}
    assert keys == set(ReadsShapes().state_dict())


def test_functional_linear_on_computed_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Parameter(torch.randn(7, 4))

        def forward(self, x):
            return F.linear(x.flatten(1), self.embed * 2.0)

    ported, _ = _check(Tied(), (3, 1, 2, 2))
    assert "@" in ported.source
