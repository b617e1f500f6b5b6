"""A trained model's weights as its torch original's state_dict, through jaxcnn's torch-free interchange."""

from pathlib import Path
from typing import Mapping

import numpy as np
from flax import linen as nn

import jaxcnn
from jaxcnn.files import atomic_target
from train.trainer.nnx_model import NnxModel

TORCH_PICKLE_SUFFIXES = (".pt", ".pth")


def export_torch(model: nn.Module, variables: Mapping, path: str | Path, about: jaxcnn.About | None = None) -> Path:
    """Writes `variables` as the torch-keyed state_dict of `model`'s torch original, which
    `parity.originals.torch_models.create(name, **model_kwargs).load_state_dict(..., strict=True)` accepts.

    .safetensors needs no torch (torch reads it with safetensors.torch.load_file) and carries `about` in its
    header (the network, its class names and preprocessing: `python -m train.inspect --weights FILE --image PHOTO`
    then names its predictions); .pt/.pth is torch.save's format and imports torch, which must then be installed.
    An NnxModel's variables are written from its NNX network (jaxcnn.torch_state_dict of the network).
    """
    path = Path(path)
    if path.suffix not in (".safetensors", *TORCH_PICKLE_SUFFIXES):
        raise ValueError(f"--export-torch {path}: give a .safetensors (no torch needed), .pt or .pth path")
    state = (jaxcnn.torch_state_dict(model.network(variables)) if isinstance(model, NnxModel)
             else jaxcnn.torch_state_dict(model, variables))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        jaxcnn.write_torch_safetensors(state, path, about.to_metadata() if about else None)
        return path
    try:
        import torch  # only for torch's own file format; the mapping above is numpy
    except ImportError as err:
        raise ValueError(f"--export-torch {path}: writing .pt needs torch; give a .safetensors path instead") from err
    with atomic_target(path) as tmp:
        torch.save({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}, tmp)
    return path
