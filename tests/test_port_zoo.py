"""parity.port on torchvision's classification CNN families (parity.originals.zoo, written in torchvision's style): each
family's small version ported and proven in eval and train mode, the full-size networks' parameter counts pinned
and their generated model.py readable and nested, the port under jit, other batch sizes and vmap."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from parity import port
from parity.originals import zoo
from parity.originals.zoo import googlenet
from tests.spec import fast_only

# torchvision's own figures (sum of p.numel() over parameters(), 1000 classes)
PARAMETERS = {
    "resnet18": 11_689_512, "resnet50": 25_557_032, "resnext50_32x4d": 25_028_904, "wide_resnet50_2": 68_883_240,
    "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032,
    "efficientnet_b0": 5_288_548, "efficientnet_v2_s": 21_458_488, "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604, "convnext_tiny": 28_589_128, "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496, "googlenet": 6_624_904, "inception_v3": 23_834_568, "mnasnet0_5": 2_218_512,
    "regnet_x_400mf": 5_495_976, "regnet_y_400mf": 4_344_144, "alexnet": 61_100_840, "vgg11_bn": 132_868_840,
}
BIG = ("wide_resnet50_2", "alexnet", "vgg11_bn", "efficientnet_v2_s", "convnext_tiny")  # > 20M: torch's init alone
FAST_FAMILIES = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5", "convnext_tiny",
                 "regnet_y_400mf")


def test_the_zoo_is_the_issues_list():
    assert set(zoo.FAMILIES) == set(PARAMETERS)


@pytest.mark.parametrize("name", fast_only(list(PARAMETERS), [n for n in PARAMETERS if n not in BIG]))
def test_full_size_parameter_counts_are_torchvisions(name):
    torch.manual_seed(0)
    module = zoo.FAMILIES[name]()
    assert sum(p.numel() for p in module.parameters()) == PARAMETERS[name]


def _example(name: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    size = zoo.input_size(name)
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("name", fast_only(list(zoo.FAMILIES), FAST_FAMILIES))
def test_each_family_ports_equal_in_eval_and_train_mode(name):
    torch.manual_seed(0)
    module, x = zoo.tiny(name), _example(name)
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert zoo.passes(name, report), report.table()
    trains = any(type(m).__name__ in ("BatchNorm2d", "Dropout", "StochasticDepth") for m in module.modules())
    assert ("gradients (train)" in report.verdicts) == trains


@pytest.mark.slow
def test_googlenet_with_its_auxiliary_logits_ports_both_modes():
    """torchvision's default aux_logits=True: three outputs in train mode, the logits alone in eval mode."""
    torch.manual_seed(0)
    module, x = googlenet.googlenet(10, width=0.0625, aux_logits=True), _example("googlenet")
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()
    net = ported.module
    net.train()
    outputs = net(x.transpose(0, 2, 3, 1))
    assert [o.shape for o in outputs] == [(len(x), 10)] * 3


@pytest.mark.slow
def test_inception_train_mode_in_float64():
    """Flax and torch, both in float64, in train mode: forward, every gradient and every batch statistic."""
    torch.manual_seed(0)
    module = zoo.tiny("inception_v3")
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # its masks are replayed by port.check; here the two sides would draw their own
    x = _example("inception_v3").astype(np.float64)
    ported = port.build(module, x, api="linen")
    reference = module.double().train()
    expected = reference(torch.from_numpy(x))
    (expected ** 2).sum().backward()
    with jax.enable_x64(True):
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), ported.variables)

        def loss(params):
            y, updated = ported.module.apply({**variables, "params": params}, x.transpose(0, 2, 3, 1), train=True,
                                             mutable=["batch_stats"])
            return (y ** 2).sum(), (y, updated)

        (_, (y, updated)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        assert y.dtype == jnp.float64
        got = port.torch_state_dict(ported.module, {"params": grads, "batch_stats": updated["batch_stats"]})
    out = expected.detach().numpy()
    assert np.abs(np.asarray(y) - out).max() <= 1e-9 * np.abs(out).max()
    for key, parameter in reference.named_parameters():
        want = parameter.grad.numpy()
        assert np.abs(np.asarray(got[key]) - want).max() <= 1e-8 * (np.abs(want).max() + 1e-12), key
    for key, buffer in reference.named_buffers():
        if key.endswith(("running_mean", "running_var")):
            want = buffer.numpy()
            assert np.abs(np.asarray(got[key]) - want).max() <= 1e-9 * np.abs(want).max(), key


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_port_runs_under_jit_other_batch_sizes_and_vmap(name):
    torch.manual_seed(0)
    module = zoo.tiny(name).eval()
    graphdef, state = nnx.split(port.build(module, _example(name)).module)  # NNX's functional form
    apply = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    for batch in (1, 5):
        x = _example(name, batch, seed=batch)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        nhwc = x.transpose(0, 2, 3, 1)
        got = np.asarray(apply(state, nhwc))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        mapped = jax.vmap(lambda image: nnx.merge(graphdef, state)(image[None])[0])(nhwc)
        np.testing.assert_allclose(np.asarray(mapped), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _full_size(name: str) -> port.Ported:
    torch.manual_seed(0)
    return port.build(zoo.FAMILIES[name](), _example(name))


def test_resnet50_is_a_short_nested_source():
    ported = _full_size("resnet50")
    lines = ported.source.splitlines()
    assert len(lines) < 150, ported.source
    assert "class Bottleneck(nnx.Module):" in ported.source and "class ResNet(nnx.Module):" in ported.source
    assert len(re.findall(r"^class Bottleneck\w*\(nnx\.Module\):", ported.source, re.M)) <= 2  # with/without downsample
    net = ported.module
    assert net.layer1[0].conv1.kernel.shape == (1, 1, 64, 64) and net.layer4[2].bn3.scale.shape == (2048,)
    table = dict((row[0], row[1]) for row in type(ported.module).TORCH_WEIGHTS)
    assert table["layer1.0.conv1.weight"] == "layer1/0/conv1/kernel"
    assert table["layer2.0.downsample.1.running_var"] == "layer2/0/downsample/1/var"


def test_mobilenet_v2_is_a_short_nested_source():
    ported = _full_size("mobilenet_v2")
    assert len(ported.source.splitlines()) < 120, ported.source
    assert "class InvertedResidual" in ported.source
    assert ported.module.features[1].conv[0][0].kernel.shape == (3, 3, 1, 32)


def test_regnet_names_that_are_not_identifiers_keep_their_torch_keys():
    torch.manual_seed(0)
    module = zoo.tiny("regnet_y_400mf")
    ported = port.build(module, _example("regnet_y_400mf"), api="linen")
    compile(ported.source, "model.py", "exec")
    keys = [row[0] for row in type(ported.module).TORCH_WEIGHTS]
    assert keys == [k for k in module.state_dict()]
    assert any("block1-0" in k for k in keys)
    assert "self.block1_0 = " in ported.source  # a valid attribute in model.py, the torch name in Flax's tree
    assert ported.variables["params"]["trunk_output"]["block1"]["block1-0"]["proj"]["0"]["kernel"].shape == (
        1, 1, 8, 8)
    table = dict((row[0], row[1]) for row in type(ported.module).TORCH_WEIGHTS)
    assert table["trunk_output.block1.block1-0.proj.0.weight"] == "params/trunk_output/block1/block1-0/proj/0/kernel"
    nnx_port = port.build(module, _example("regnet_y_400mf"))  # NNX: the attribute's name in the state path
    table = dict((row[0], row[1]) for row in type(nnx_port.module).TORCH_WEIGHTS)
    assert table["trunk_output.block1.block1-0.proj.0.weight"] == "trunk_output/block1/block1_0/proj/0/kernel"
    assert nnx_port.module.trunk_output["block1"].block1_0.proj[0].kernel.shape == (1, 1, 8, 8)


def test_convnext_forward_has_no_transposes():
    torch.manual_seed(0)
    ported = port.build(zoo.tiny("convnext_tiny"), _example("convnext_tiny"))
    calls = "\n".join(part.split("\nclass ")[0] for part in ported.source.split("def __call__")[1:])
    assert "transpose" not in calls and "moveaxis" not in calls, ported.source
