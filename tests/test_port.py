"""parity.port: the user's own torch networks as Flax modules, proven equal; refusals that name every problem."""

import copy
import inspect
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax.traverse_util import flatten_dict

import jaxcnn
from parity import port
from parity.checks import check as parity_check, device, suite
from parity.port._layout import Layout
from tests import helpers, port_nets, spec


def _loss(model, kind):
    def loss(params, state, x, targets):
        y = model.apply({**state, "params": params}, x)
        if kind == "mse":
            return jnp.mean((y - targets) ** 2)
        return optax.softmax_cross_entropy_with_integer_labels(y, targets).mean()
    return loss


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


# The fast set ports one network per torch style of the course (a view after nn.Flatten, x.view(x.size(0), ...),
# F.* calls, BatchNorm and Dropout, a bare nn.Sequential); the slow set all 14 (VGG's 130M parameters).
FAST_PORTS = ("two_conv_net", "lenet5_mnist", "lenet5_classic", "cnn_bn_dropout", "cifar_conv_mlp")


@pytest.mark.parametrize("name", spec.fast_only(jaxcnn.list_models(), FAST_PORTS))
def test_porting_a_registry_original_reproduces_jaxcnn(name):
    """The port of each torch original computes jaxcnn's network: outputs within 1e-5, gradients within 1e-4
    (on the gradient check's kink-free input and settings), the same weights by torch key, and every check."""
    module, model, variables, x, targets, kind = suite.gradient_case(name, 0, device.resolve("cpu"))
    ported = port.build(module, x, api="linen")
    ours = {k: v.numpy() for k, v in port.torch_state_dict(ported.module, ported.variables).items()}
    theirs = jaxcnn.torch_state_dict(model, variables)
    assert list(ours) == list(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    x_nhwc = parity_check.to_nhwc(x)
    y, y_ported = model.apply(variables, x_nhwc), ported.module.apply(ported.variables, x_nhwc)
    assert y.shape == y_ported.shape
    assert float(np.max(np.abs(y_ported - y)) / max(1.0, float(np.max(np.abs(y))))) <= 1e-5

    targets = parity_check.to_nhwc(targets)
    grads = [jax.jit(jax.grad(_loss(m, kind)))(v["params"], {k: a for k, a in v.items() if k != "params"}, x_nhwc,
                                                targets) for m, v in ((ported.module, ported.variables), (model, variables))]
    ours = port.torch_state_dict(ported.module, {**ported.variables, "params": grads[0]})  # by torch key
    theirs = jaxcnn.torch_state_dict(model, {**variables, "params": grads[1]})
    worst = max(_relative(ours[k].numpy(), theirs[k]) for k in theirs if not k.endswith("num_batches_tracked"))
    assert worst <= 1e-4


# Each port's own report against torch (the test above proves the port equals jaxcnn, which the parity suite
# proves equal to torch): in the fast set for a network with BatchNorm and Dropout and one without; of the eight
# VGGs, whose layers repeat, one with BatchNorm and one without.
@pytest.mark.parametrize("name", spec.fast_only([n for n in jaxcnn.list_models()
                                                  if not n.startswith("vgg") or n in ("vgg11", "vgg16_bn")],
                                                 ("cnn_bn_dropout", "lenet5_mnist")))
def test_the_report_on_a_registry_original_passes(name):
    kwargs, size = suite.gradient_settings(name)  # e.g. sun_regressor at 64x64, where kink-free inputs exist
    module, model = suite.random_original(name, **kwargs)
    # Train mode wants a batch of two at least (BatchNorm's statistics of VGG's 1x1 maps) and no near-kinks there.
    x = suite.kink_free_input(copy.deepcopy(module), name, suite.input_shape(model, 2, size), train=True)
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()


# Slow: the 1-D and 3-D networks (their flatten layouts stay in the fast set, below).
@pytest.mark.parametrize("name", spec.fast_only(sorted(port_nets.NETWORKS),
                                                 set(port_nets.NETWORKS) - {"signal_1d", "volume_3d"}))
def test_written_networks_port_in_eval_and_train_mode(name):
    cls, shape = port_nets.NETWORKS[name]
    torch.manual_seed(0)
    module = cls()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()
    has_state = any(isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)) for m in module.modules())
    trains = {"forward (train)", "gradients (train)"} <= set(report.verdicts)
    assert trains == (has_state or "dropout(" in inspect.getsource(cls) or "self.training" in inspect.getsource(cls))
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        assert "batch statistics (train)" in report.verdicts


def test_train_mode_replays_every_dropout_mask():
    torch.manual_seed(0)
    module = port_nets.Functional()
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    ported = port.build(module, x, api="linen")
    _, new = ported.module.apply(ported.variables, parity_check.to_nhwc(x), train=True, mutable=["intermediates"],
                                 rngs={"dropout": jax.random.key(0)})
    (mask,) = flatten_dict(new["intermediates"]).values()
    assert 0.6 < float(np.mean(mask[0])) < 0.9  # rate 0.25: the mask is drawn, not all-ones
    assert [row[0] for row in type(ported.module).TORCH_DROPOUTS] == [("function", "", 0)]  # forward's 1st F.dropout


@pytest.mark.parametrize("name", ["lenet5_mnist", "mnist_cnn", "signal_1d", "volume_3d"])
def test_a_flatten_into_a_linear_permutes_its_weights_and_transposes_nothing(name):
    if name in port_nets.NETWORKS:
        cls, shape = port_nets.NETWORKS[name]
        torch.manual_seed(0)
        module = cls()
    else:
        module, model, _, x = helpers.random_pair(name, batch=2)
        shape = x.shape
    ported = port.build(module, np.zeros(shape, np.float32))
    call = ported.source[ported.source.index("def __call__"):]
    assert "transpose" not in call and "moveaxis" not in call
    assert any(row[4] is not None for row in type(ported.module).TORCH_WEIGHTS)


def test_the_written_model_py_is_the_ported_module(tmp_path):
    torch.manual_seed(0)
    module = port_nets.TinyResNet()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ported = port.build(module, x, api="linen")
    port.save(ported, tmp_path)
    model, variables = port.load(tmp_path)
    assert (tmp_path / "model.py").read_text() == ported.source
    assert type(model).__name__ == "TinyResNet"
    x_nhwc = parity_check.to_nhwc(x)
    np.testing.assert_array_equal(jax.jit(model.apply)(variables, x_nhwc),
                                  jax.jit(ported.module.apply)(ported.variables, x_nhwc))
    # (the command checks the module it loads from the written model.py: tests/test_port_cli.py)


def test_any_batch_size_after_tracing_with_one():
    torch.manual_seed(0)
    module = port_nets.Functional().eval()
    model, variables = port.port(module, np.zeros((2, 1, 28, 28), np.float32), api="linen")
    apply = jax.jit(model.apply)
    for batch in (1, 5, 0):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(apply(variables, parity_check.to_nhwc(x)), expected, atol=1e-6)


def test_a_wrong_weight_layout_fails_the_check():
    module, model, _, x = helpers.random_pair("lenet5_mnist", batch=2)
    ported = port.build(module, x, api="linen")
    bad = jax.tree_util.tree_map(lambda a: a, ported.variables)
    bad["params"]["fc1"]["kernel"] = jnp.asarray(module.fc1.weight.detach().numpy().T)  # torch's (C, H, W) order
    report = port.check(module, ported.module, bad, x)
    assert not report.ok and not report.verdicts["forward"].ok


def test_every_unsupported_operation_is_listed_with_its_line():
    source, first = inspect.getsourcelines(port_nets.Unsupported.forward)
    expected = {"PixelShuffle": "self.shuffle(", "LocalResponseNorm": "self.norm(", "torch.roll": "torch.roll(",
                "Tensor.cumprod": ".cumprod("}
    line = {what: first + i for i, text in enumerate(source) for what, marker in expected.items() if marker in text}
    with pytest.raises(port.PortError) as err:
        port.build(port_nets.Unsupported(), np.zeros((1, 1, 8, 8), np.float32))
    message = str(err.value)
    assert "4 operation(s) are not supported" in message and "nothing was ported" in message
    for what in expected:
        (row,) = [r for r in message.splitlines() if what in r]
        assert f"port_nets.py:{line[what]}:" in row, row


@pytest.mark.parametrize("cls, words", [
    (port_nets.DataDependent, r"DataDependent \(port_nets\.py\) reads tensor values into Python control flow at "
                              r"port_nets\.py:\d+: if x\.sum\(\) > 0: \(Tensor\.__bool__\)"),
    (port_nets.CumulativeBatchNorm, "momentum=None"),
    (port_nets.SliceAssignment, r"port_nets\.py:\d+: a\[:, 0\] = 0\.0  <- tensor item assignment"),
    (port_nets.InPlaceView, r"port_nets\.py:\d+: return first \* 2: reads a view of a tensor that was changed in place "
                            r"afterwards \(port_nets\.py:\d+: a\.relu_\(\)\)"),
])
def test_refusals_say_what_to_change(cls, words):
    with pytest.raises(port.PortError, match=words):
        port.build(cls(), np.zeros((2, 1, 8, 8), np.float32))


def test_a_wrong_input_shape_names_the_flag():
    with pytest.raises(port.PortError, match="--input-shape"):
        port.build(port_nets.Functional(), np.zeros((2, 3, 28, 28), np.float32))


def test_trained_weights_both_ways_bit_for_bit():
    torch.manual_seed(0)
    module = port_nets.Signal1d()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(3):  # moves weights, running statistics and num_batches_tracked
        optimizer.zero_grad()
        module(torch.randn(8, 2, 40)).square().mean().backward()
        optimizer.step()
    state = module.state_dict()
    ported = port.build(module, np.zeros((2, 2, 40), np.float32))
    variables = port.load_state_dict(ported.module, state)
    back = port.torch_state_dict(ported.module, variables, dropped=state)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype for k in state)
    fresh = port_nets.Signal1d()
    fresh.load_state_dict(port.torch_state_dict(ported.module, variables), strict=True)
    assert int(fresh.features[1].num_batches_tracked) == 0  # Flax keeps no count: 0 unless `dropped` gives it


def test_a_state_dict_that_does_not_fit_lists_every_difference():
    torch.manual_seed(0)
    ported = port.build(port_nets.Functional(), np.zeros((1, 1, 28, 28), np.float32))
    state = dict(port_nets.Functional().state_dict())
    state.pop("conv1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["fc2.weight"] = torch.zeros(3, 3)
    with pytest.raises(jaxcnn.ConversionError) as err:
        port.load_state_dict(ported.module, state)
    assert err.value.missing == ["conv1.bias"] and err.value.unexpected == ["extra.weight"]
    assert "fc2.weight" in err.value.mismatched[0]


def test_layouts_round_trip():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    for layout in (Layout.channels_last(4), Layout.same(4), Layout((0, 3, 2, 1))):
        np.testing.assert_array_equal(layout.to_torch(layout.to_flax(a)), a)
    flat = Layout.flat((4, 5, 3))
    f = a.reshape(2, -1)
    np.testing.assert_array_equal(flat.to_torch(flat.to_flax(f)), f)
    np.testing.assert_array_equal(flat.to_flax(f), np.moveaxis(a, 1, -1).reshape(2, -1))
    assert Layout.flat((1, 1, 7)).is_torch and Layout.flat((5, 1)).is_torch


def test_supported_lists_what_the_issue_names():
    supported = port.supported()
    for module in ("Conv1d", "Conv2d", "Conv3d", "BatchNorm1d", "BatchNorm2d", "Linear", "Dropout", "MaxPool1d",
                   "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Flatten", "ReLU",
                   "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh",
                   "Softmax", "LogSoftmax"):
        assert f"nn.{module}" in supported["modules"]
    for method in ("view", "reshape", "flatten", "add", "sub", "mul", "div", "mean", "sum"):
        assert f"Tensor.{method}" in supported["methods"]
    guide = (Path(__file__).resolve().parents[1] / "docs" / "port.md").read_text()
    section = guide[guide.index("## Supported operations"):]
    assert [m for m in supported["modules"] if m.removeprefix("nn.") not in section] == []


class _OddNames(torch.nn.Module):
    """Submodule names that are not identifiers, a name the generated code uses itself, and two that would
    collide once made valid. (torch.fx cannot trace a submodule named after a keyword.)"""

    def __init__(self):
        super().__init__()
        self.add_module("block-1", torch.nn.Conv2d(2, 3, 3, padding=1))
        self.add_module("block_1", torch.nn.Conv2d(3, 3, 1))
        self.add_module("jnp", torch.nn.BatchNorm2d(3))
        self.add_module("0", port_nets.ResidualBlock(3, 3))

    def forward(self, x):
        x = getattr(self, "block_1")(getattr(self, "block-1")(x))
        return getattr(self, "0")(getattr(self, "jnp")(x))


def test_names_that_are_not_identifiers_are_made_valid_and_unique():
    torch.manual_seed(0)
    module = _OddNames()
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    ported = port.build(module, x, api="linen")
    compile(ported.source, "model.py", "exec")
    assert set(ported.variables["params"]) == {"block-1", "block_1", "jnp", "0"}  # Flax's tree keeps torch's names
    assert {"block_1", "block_1_2", "jnp_", "layers_0"} <= set(re.findall(r"^ +self\.(\w+) = ", ported.source, re.M))
    assert [row[0] for row in type(ported.module).TORCH_WEIGHTS] == list(module.state_dict())  # torch's own keys
    assert port.check(module, ported.module, ported.variables, x).ok


def test_each_submodule_class_is_one_flax_class_and_the_variables_nest_as_the_state_dict():
    torch.manual_seed(0)
    module = port_nets.TinyResNet()
    ported = port.build(module, np.zeros((2, 3, 16, 16), np.float32), api="linen")
    assert "class ResidualBlock(nn.Module)" in ported.source and "class ResidualBlockWithShortcut(nn.Module)" in ported.source
    assert ported.variables["params"]["layers"]["1"]["shortcut"]["0"]["kernel"].shape == (1, 1, 8, 16)
    rows = {row[0]: row[1] for row in type(ported.module).TORCH_WEIGHTS}
    assert rows["layers.1.shortcut.0.weight"] == "params/layers/1/shortcut/0/kernel"


def test_a_loaded_port_is_a_module_of_its_own(tmp_path):
    """inspect finds its source, it pickles, tracebacks show model.py's lines; the same name on every load."""
    import pickle
    import traceback
    torch.manual_seed(0)
    module = port_nets.TinyResNet()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    port.save(port.build(module, x, api="linen"), tmp_path)
    model, variables = port.load(tmp_path)
    assert inspect.getsourcefile(type(model)) == str((tmp_path / "model.py").resolve())
    assert "def __call__" in inspect.getsource(type(model))
    again = pickle.loads(pickle.dumps(model))
    x_nhwc = parity_check.to_nhwc(x)
    np.testing.assert_array_equal(again.apply(variables, x_nhwc), model.apply(variables, x_nhwc))
    assert type(port.load(tmp_path)[0]).__module__ == type(model).__module__
    with pytest.raises(Exception) as err:
        model.apply(variables, np.zeros((2, 16, 16, 5), np.float32))  # 5 channels where the stem takes 3
    assert "model.py" in "".join(traceback.format_tb(err.value.__traceback__))


def test_a_network_with_auxiliary_outputs_in_train_mode_returns_them_there():
    torch.manual_seed(0)
    module = port_nets.AuxiliaryInTraining()
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    ported = port.build(module, x, api="linen")
    xf = parity_check.to_nhwc(x)
    logits = ported.module.apply(ported.variables, xf)
    (train_logits, features), _ = ported.module.apply(ported.variables, xf, train=True, mutable=["batch_stats"])
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(train_logits))
    assert features.shape == (2, 6, 6, 2)  # torch's (N, C, H, W) features, channels-last
    compile(ported.source, "model.py", "exec")


def test_the_state_dict_back_carries_the_layout_versions_torch_loads_by(tmp_path):
    module = port_nets.VersionedLayout()
    port.save(port.build(module, np.zeros((2, 1, 8, 8), np.float32)), tmp_path)
    model, variables = port.load(tmp_path)
    state = port.torch_state_dict(model, variables)
    assert state._metadata[""]["version"] == 2
    port_nets.VersionedLayout().load_state_dict(state, strict=True)
    del state._metadata
    with pytest.raises(ValueError, match="version None"):  # what a user met before: torch's load needs them
        port_nets.VersionedLayout().load_state_dict(state, strict=True)
