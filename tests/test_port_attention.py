"""parity.port on the blocks of CNN hybrids and newer CNNs: self-attention written with matmul and softmax, with
scaled_dot_product_attention and with einsum; ConvNeXt v2's GRN (norm, addcmul); sine positional encodings
(arange, cumsum, sin, cos); expand, clone, floor division; a buffer kept out of the state_dict (BlurPool's
filter); each ported and proven by parity.port.check in eval and train mode."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parity import port


def _check(module, shape, seed=1):
    torch.manual_seed(0)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ported = port.build(module, x)
    compile(ported.source, "model.py", "exec")
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source
    return ported, report


class Attention2d(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, three ways (`kind`)."""

    def __init__(self, channels: int, heads: int, kind: str):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)  # (N, heads, d, HW)
        q, k, v = q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)  # (N, heads, HW, d)
        if self.kind == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v)
        elif self.kind == "einsum":
            scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(c // self.heads)
            y = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
        else:
            y = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(dim=-1) @ v
        return x + self.proj(y.transpose(-1, -2).reshape(n, c, h, w))


class Hybrid(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.attention = Attention2d(8, 2, kind)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.attention(self.stem(x)).mean((2, 3)))


def test_attention_with_matmul_and_softmax():
    ported, report = _check(Hybrid("matmul"), (2, 3, 8, 8))
    assert " @ " in ported.source and "batch statistics (train)" in report.verdicts


def test_attention_with_scaled_dot_product_attention():
    ported, _ = _check(Hybrid("sdpa"), (2, 3, 8, 8))
    assert "layers.scaled_dot_product_attention(" in ported.source


def test_attention_with_einsum():
    ported, _ = _check(Hybrid("einsum"), (2, 3, 8, 8))
    assert "jnp.einsum('bhqd,bhkd->bhqk'" in ported.source


class GRN(nn.Module):
    """ConvNeXt v2's global response normalisation (channels last), with addcmul as timm writes it."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(dim) * 0.1)
        self.beta = nn.Parameter(torch.randn(dim) * 0.1)

    def forward(self, x):
        gx = x.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return x + torch.addcmul(self.beta, self.gamma, x * nx)


class SinePositions(nn.Module):
    """Adds DETR-style sine positional encodings made from the map's size, then a GRN block."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.grn = GRN(8)
        self.norm = nn.Sequential(nn.Conv2d(8, 8, 1))

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        ones = torch.ones(1, h, w)
        y = ones.cumsum(1) / h
        xs = ones.cumsum(2) / w
        steps = torch.arange(c // 4, dtype=torch.float32)
        freq = 100.0 ** (steps // 1 * 4 / c)
        pos = torch.cat([torch.sin(y[..., None] / freq), torch.cos(xs[..., None] / freq)] * 2, dim=-1)  # (N, H, W, C)
        x = x + pos.permute(0, 3, 1, 2)
        x = self.grn(x.permute(0, 2, 3, 1).clone()).permute(0, 3, 1, 2)
        scale = F.normalize(x.mean((2, 3)), dim=1)[:, :, None, None].expand(-1, -1, h, w)
        return self.norm(x * scale)


def test_grn_sine_positions_normalize_expand_and_clone():
    ported, _ = _check(SinePositions(), (2, 3, 6, 5))
    assert "jnp.cumsum(" in ported.source and "jnp.sin(" in ported.source


class BatchSized(nn.Module):
    """Tensors made at the batch's size: a mask (EdgeNeXt's positional encoding), a class token expanded and one
    repeated per image, and an index over the batch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.token = nn.Parameter(torch.randn(1, 4, 1))

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        mask = torch.zeros(n, h, w).cumsum(1) + torch.full((n, 1, 1), 0.5)
        x = x * mask[:, None]
        tokens = torch.cat([self.token.expand(n, -1, -1), self.token.repeat(n, 1, 2), x.flatten(2)], dim=2)
        return tokens + torch.arange(n, dtype=torch.float32)[:, None, None]


def test_sizes_that_follow_the_batch_are_written_from_it():
    ported, report = _check(BatchSized(), (2, 3, 4, 4))
    assert "forward (batch of 3)" in report.verdicts
    assert "jnp.zeros((x.shape[0], 4, 4)" in ported.source and "jnp.arange(x.shape[0]" in ported.source


def test_a_buffer_kept_out_of_the_state_dict_goes_with_the_port(tmp_path):
    class Blur(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.register_buffer("filt", torch.tensor([1.0, 2.0, 1.0]).outer(torch.tensor([1.0, 2.0, 1.0])
                                                                             ).div(16).repeat(4, 1, 1, 1),
                                 persistent=False)

        def forward(self, x):
            return F.conv2d(F.pad(self.conv(x), (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=4)

    module = Blur()
    ported, _ = _check(module, (2, 3, 9, 9))
    assert [row[0] for row in type(ported.module).TORCH_WEIGHTS] == list(module.state_dict())
    port.save(ported, tmp_path)
    net, _ = port.load(tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(net(x), ported.module(x))
    net.filt[...] = net.filt[...] * 0
    port.load_state_dict(net, module.state_dict())  # the constant comes back with the port, not the state_dict
    np.testing.assert_array_equal(net.filt[...], module.filt.numpy())


class Mixer(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.linear = nn.Linear(n, n)

    def forward(self, x):
        return self.linear(x).tanh()


class Gathers(nn.Module):
    """CBAM's spatial attention (max and mean over channels), a permutation by a list and one by an int64 table
    in the state_dict (EfficientFormer's attention_bias_idxs), repeat and repeat_interleave, amax, a submodule
    called on its own output transposed."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rows", torch.tensor([5, 0, 1, 4, 2, 3]))
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.mix = Mixer(6)
        self.spatial = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        attention = torch.cat([torch.max(x, dim=1, keepdim=True)[0], x.mean(1, keepdim=True)], dim=1)
        x = x * self.spatial(attention).sigmoid()
        x = x[:, [3, 1, 0, 2]][:, :, self.rows]
        x = self.mix(self.mix(x).transpose(-1, -2)).transpose(-1, -2)
        peak = x.amax(dim=(2, 3), keepdim=True).repeat(1, 1, 6, 1).repeat_interleave(1, dim=3)
        return torch.maximum(x, peak * 0.5)


def test_max_along_a_dim_list_indexing_repeats_and_a_submodule_reused_across_layouts():
    ported, _ = _check(Gathers(), (2, 4, 6, 6))
    assert "jnp.argmax(" in ported.source and "jnp.array([3, 1, 0, 2])" in ported.source
