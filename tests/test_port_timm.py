"""parity.port on code it was not written for: one small network of each timm family the port supports, ported at
64x64 and checked in eval and train mode against torch, judged by the float64 referee; every source compiles."""

import numpy as np
import pytest
import torch

from parity import port
from parity.originals import timm_zoo

FAST = {"mobilenetv3_small_050", "regnetx_002"}  # BatchNormAct2d, SE, hard-swish; grouped convs, the stages' names
LONG = {"efficientnet_b0"}  # over 30 s: `make sweep`


def _cases():
    return [name if name in FAST else pytest.param(name, marks=[pytest.mark.slow] + [pytest.mark.sweep] * (name in LONG))
            for name in sorted(timm_zoo.PORTED.values())]


@pytest.mark.parametrize("name", _cases())
def test_a_timm_family_ports_equal_in_eval_and_train_mode(name):
    torch.manual_seed(0)
    module = timm_zoo.create(name)
    size = timm_zoo.input_size(name)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    ported = port.build(module, x)
    compile(ported.source, "model.py", "exec")
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    assert ("batch statistics (train)" in report.verdicts) == has_batch_norm


def test_each_family_is_named_after_its_timm_file():
    timm = timm_zoo.import_timm()
    registry = timm.models._registry._model_to_module
    assert {family: registry[name] for family, name in timm_zoo.PORTED.items()} == \
        {family: family for family in timm_zoo.PORTED}
    assert set(timm_zoo.REFUSED) <= set(timm.list_models())


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
