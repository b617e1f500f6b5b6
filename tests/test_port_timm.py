"""parity.port on code it was not written for: one small network of every CNN family of timm (its model files,
CNN hybrids with attention included), ported and checked in eval and train mode against torch, judged by the float64
referee; every source compiles. `make test` ports a sample; `make sweep` every family."""

import numpy as np
import pytest
import torch

from parity import port
from parity.originals import timm_zoo

FAST = {"mobilenetv3", "regnet"}  # BatchNormAct2d, SE, hard-swish; grouped convs, the stages' names
SAMPLE = {"maxxvit", "efficientvit_mit", "tresnet", "rexnet"}  # attention; casts; BlurPool's buffer; shared widths


def _cases():
    marks = lambda family: [] if family in FAST else [pytest.mark.slow] if family in SAMPLE else \
        [pytest.mark.slow, pytest.mark.sweep]  # noqa: E731
    return [pytest.param(family, marks=marks(family)) for family in sorted(timm_zoo.FAMILIES)
            if family not in timm_zoo.REFUSED]


@pytest.mark.parametrize("family", _cases())
def test_a_timm_family_ports_equal_in_eval_and_train_mode(family):
    torch.manual_seed(0)
    module = timm_zoo.network(family)
    x = timm_zoo.example_input(family)
    ported = port.build(module, x)
    compile(ported.source, "model.py", "exec")
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    assert ("batch statistics (train)" in report.verdicts) == has_batch_norm


def test_every_timm_family_is_a_cnn_proven_here_or_a_transformer():
    timm = timm_zoo.import_timm()
    families = {timm_zoo.family_of(name) for name in timm.list_models()}
    assert families == set(timm_zoo.FAMILIES) | timm_zoo.TRANSFORMERS, "a timm upgrade brought or removed families"
    assert not set(timm_zoo.FAMILIES) & timm_zoo.TRANSFORMERS
    assert {family: timm_zoo.family_of(e.network) for family, e in timm_zoo.FAMILIES.items()} == \
        {family: family for family in timm_zoo.FAMILIES}


@pytest.mark.slow
def test_timm_stochastic_depth_and_dropout_replay_in_train_mode():
    """timm's drop_path (a function of its own, matched by name) and its head's dropout: torch draws the same
    masks as Flax in the check, so train mode is equal."""
    torch.manual_seed(0)
    module = timm_zoo.create("test_convnext", drop_path_rate=0.2, drop_rate=0.1)
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    ported = port.build(module, x)
    assert "layers.StochasticDepth(" in ported.source and "layers.Dropout(0.1, rngs=rngs)" in ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok and "forward (train)" in report.verdicts, report.table()


@pytest.mark.slow
def test_a_class_whose_instances_all_take_its_defaults_but_one_compiles():
    """cspresnet50's third stage: its first ConvNormAct builds `BatchNormAct2d()` with every argument at its default,
    which the generated class, taking fields from the other instances, once wrote as `BatchNormAct2d(, ...)`."""
    torch.manual_seed(0)
    stage = timm_zoo.create("cspresnet50").stages[2]
    x = np.random.default_rng(0).standard_normal((2, 256, 8, 8)).astype(np.float32)
    ported = port.build(stage, x)
    compile(ported.source, "model.py", "exec")
    assert "(," not in ported.source
    report = port.check(stage, ported.module, ported.variables, x)
    assert report.ok, report.table()
