"""timm's CNNs, one small network per family, on which parity.port is proven against code it was not written for.

timm imports torchvision, of which it uses only Python code. `import_timm` gives it that alone where torchvision is
not imported yet: a package whose `__init__` (which loads torchvision's compiled extension, and fails where the
CUDA wheel sits beside a CPU torch) is not run.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

import torch

# family (the timm model file) -> a small network of it, proven (tests/test_port_timm.py); REFUSED: networks the
# port refuses or gets wrong today, with the reason (mixnet is efficientnet.py's: that file's other networks port).
PORTED = {
    "resnet": "resnet18", "efficientnet": "efficientnet_b0", "mobilenetv3": "mobilenetv3_small_050",
    "regnet": "regnetx_002", "convnext": "convnext_atto", "dla": "dla34", "nfnet": "nfnet_l0",
}
REFUSED = {
    "cspresnet50": "ports, but eval-mode gradients differ from float64 by 4e-2 where torch's do by 3e-6",
    "densenet121": "ports, but eval-mode gradients differ from float64 by 7e-3 where torch's do by 7e-7",
    "ghostnet_100": "ports, but train-mode BatchNorm statistics stray twice as far from float64 as torch's",
    "resnetv2_50x1_bit": "ports; gradients are ill-conditioned at random weights (torch's own are 5e-2 from float64)",
    "rexnet_100": "one block class across widths: the generated class keeps one instance's slice bound",
    "mixnet_s": "three variants of one class: the generated source does not compile",
    "tresnet_m": "internal error: the generated module's variables differ from the converted weights",
    "mobilevit_xxs": "scaled_dot_product_attention is not supported yet",
    "botnet26t_256": "attention with a fixed input size (256): fails on the 64x64 example",
}


def _torchvision_python() -> None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise ImportError("timm needs torchvision: pip install torchvision (the version made for your torch)")
    folder = os.path.dirname(spec.origin)
    package = types.ModuleType("torchvision")
    package.__path__ = [folder]
    package.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    package.__spec__.submodule_search_locations = [folder]
    package._is_tracing = lambda: False
    sys.modules["torchvision"] = package


def import_timm():
    """timm; torchvision as it is where already imported, else its Python alone (its `__init__` not run)."""
    if "torchvision" not in sys.modules:
        _torchvision_python()
    return importlib.import_module("timm")


def create(name: str, num_classes: int = 10) -> torch.nn.Module:
    """A timm network with random weights (nothing downloaded), in eval mode."""
    return import_timm().create_model(name, pretrained=False, num_classes=num_classes).eval()


def input_size(name: str) -> int:
    """The square input the port is proven on: 64, or 96 for the Inceptions."""
    return 96 if "inception" in name else 64
