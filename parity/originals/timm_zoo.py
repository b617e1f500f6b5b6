"""timm's CNNs, one small network per family (`FAMILIES`), on which parity.port is proven against code it was not
written for.

timm imports torchvision, of which it uses only Python code. `import_timm` gives it that alone where torchvision is
not imported yet: a package whose `__init__` (which loads torchvision's compiled extension, and fails where the
CUDA wheel sits beside a CPU torch) is not run.
"""

import dataclasses
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Example:
    """One family's network and the input it is ported and checked on: (batch, 3, size, size)."""
    network: str
    size: int = 64
    batch: int = 2


# Every CNN family of timm (its model file) -> a small network of it, proven by tests/test_port_timm.py; the CNN
# hybrids with attention blocks are among them. 96 for the Inceptions and NASNets (their stems need it), the
# networks whose attention is fixed to a map size at theirs; batch 4 where BatchNorm's statistics over 2 samples of
# 1x1 maps leave train mode ill-conditioned.
FAMILIES = {
    "byobnet": Example("test_byobnet"), "convmixer": Example("convmixer_768_32"),
    "convnext": Example("test_convnext"), "cpubone": Example("cpubone_nano"), "cspnet": Example("cs3darknet_focus_s"),
    "cspnext": Example("cspnext_tiny"), "densenet": Example("densenet121"), "dla": Example("dla46x_c"),
    "dpn": Example("dpn48b"), "efficientnet": Example("test_efficientnet"), "fasternet": Example("fasternet_t0"),
    "ghostnet": Example("ghostnet_050"), "hardcorenas": Example("hardcorenas_b"), "hgnet": Example("hgnetv2_b0"),
    "hrnet": Example("hrnet_w18_small"), "inception_next": Example("inception_next_atto"),
    "inception_resnet_v2": Example("inception_resnet_v2", 96), "inception_v3": Example("inception_v3", 96, 4),
    "inception_v4": Example("inception_v4", 96), "lcnetv2": Example("lcnetv2_small"),
    "mambaout": Example("test_mambaout"), "metaformer": Example("poolformerv2_s12"),
    "mobilenetv3": Example("mobilenetv3_small_050"), "mobilenetv5": Example("mobilenetv5_base"),
    "nasnet": Example("nasnetalarge", 96), "nfnet": Example("test_nfnet"), "pnasnet": Example("pnasnet5large", 96, 4),
    "rdnet": Example("rdnet_tiny"), "regnet": Example("regnetx_002"), "repghost": Example("repghostnet_050"),
    "repvit": Example("repvit_m1"), "res2net": Example("res2next50"), "resnest": Example("resnest14d"),
    "resnet": Example("test_resnet"), "resnetv2": Example("resnetv2_18"), "rexnet": Example("rexnet_100"),
    "selecsls": Example("selecsls42"), "senet": Example("legacy_seresnet18"), "sknet": Example("skresnet18"),
    "starnet": Example("starnet_s050"), "tresnet": Example("tresnet_m"), "vgg": Example("vgg11"),
    "vovnet": Example("ese_vovnet19b_slim_dw"), "xception": Example("legacy_xception"),
    "xception_aligned": Example("xception41p"),
    # CNN hybrids: attention, or global mixing beside convolutions
    "byoanet": Example("botnet26t_256"), "csatv2": Example("csatv2"), "edgenext": Example("edgenext_xx_small"),
    "efficientformer": Example("efficientformer_l1", 224), "efficientformer_v2": Example("efficientformerv2_s0"),
    "efficientvim": Example("efficientvim_m1"), "efficientvit_mit": Example("efficientvit_b0"),
    "efficientvit_msra": Example("efficientvit_m0", batch=4), "fastvit": Example("fastvit_t8"),
    "focalnet": Example("focalnet_tiny_srf"), "gcvit": Example("gcvit_xxtiny"), "iformer": Example("iformer_t"),
    "levit": Example("levit_128s"), "lowformer": Example("lowformer_b0"), "maxxvit": Example("test_coatnet"),
    "mobilevit": Example("mobilevit_xxs"), "nextvit": Example("nextvit_small"), "shvit": Example("shvit_s1"),
    "swiftformer": Example("swiftformer_xs"), "tiny_vit": Example("tiny_vit_5m_224"),
    "visformer": Example("visformer_tiny"),
}
# timm's families that are vision transformers or token mixers without convolution stages: not CNNs, not ported
TRANSFORMERS = frozenset({
    "beit", "cait", "coat", "convit", "crossvit", "davit", "deepseek_vit", "deit", "eva", "gemma4_vit", "hiera",
    "hieradet_sam2", "mlp_mixer", "mvitv2", "naflexvit", "nest", "pit", "pvt_v2", "qwen3_vit", "sequencer",
    "swin_transformer", "swin_transformer_v2", "swin_transformer_v2_cr", "tnt", "twins", "vision_transformer",
    "vision_transformer_hybrid", "vision_transformer_relpos", "vision_transformer_sam", "vitamin", "volo", "xcit",
})
# families whose network the port refuses or gets wrong today, with the reason (kept out of the proof)
REFUSED: dict[str, str] = {}


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


def create(name: str, num_classes: int = 10, **kwargs) -> torch.nn.Module:
    """A timm network with random weights (nothing downloaded), in eval mode."""
    return import_timm().create_model(name, pretrained=False, num_classes=num_classes, **kwargs).eval()


def network(family: str, **kwargs) -> torch.nn.Module:
    """The family's network, random weights, eval mode; built for its example's size where it takes `img_size`
    (attention fixed to a map size)."""
    example = FAMILIES[family]
    try:
        return create(example.network, img_size=example.size, **kwargs)
    except TypeError:  # a network that takes any size
        return create(example.network, **kwargs)


def example_input(family: str, seed: int = 0) -> np.ndarray:
    """The family's example input, (batch, 3, size, size) float32."""
    example = FAMILIES[family]
    shape = (example.batch, 3, example.size, example.size)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def family_of(network: str) -> str:
    """The timm model file a network is defined in ('resnet18' -> 'resnet')."""
    return import_timm().models._registry._model_to_module[network]
