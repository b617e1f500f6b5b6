"""torch modules and state_dicts <-> jaxcnn (Flax) variables: torch's tensors on top of jaxcnn.interchange,
which holds all knowledge of torch's layouts and works on numpy arrays without torch."""

from typing import Any, Mapping

import numpy as np
import torch
from flax import linen as nn

from jaxcnn.interchange import ConversionError, flax_name  # noqa: F401  (re-exported: parity.checks.convert's errors and names)
from jaxcnn.interchange import load_torch_weights, torch_state_dict


def torch_to_flax(module: torch.nn.Module | Mapping[str, torch.Tensor], model: nn.Module,
                  sample_nchw: Any = None) -> dict:
    """Converts a torch module (or its state_dict) into variables for the jaxcnn `model`.

    sample_nchw: an input (or just its shape) in torch's NCHW layout, used to
    trace the model; defaults to one image of `model.input_shape`.
    Returns {'params': ..., 'batch_stats': ...} (batch_stats only when the model
    has BatchNorm), float32 jax arrays. Raises ConversionError on any mismatch.
    """
    state = module.state_dict() if isinstance(module, torch.nn.Module) else dict(module)
    return load_torch_weights(model, state, getattr(sample_nchw, "shape", sample_nchw))


def flax_to_torch(variables: Mapping, model: nn.Module, module: torch.nn.Module,
                  sample_nchw: Any = None) -> dict[str, torch.Tensor]:
    """Converts jaxcnn variables into a state_dict that `module.load_state_dict(sd, strict=True)` accepts.

    The keys and dtypes are `module`'s; num_batches_tracked, which Flax does not keep, is taken from it.
    """
    target = module.state_dict()
    arrays = torch_state_dict(model, variables, list(target), getattr(sample_nchw, "shape", sample_nchw))
    return {key: target[key].clone() if key.endswith(".num_batches_tracked") else
            torch.from_numpy(np.array(arrays[key], copy=True)).to(target[key].dtype) for key in target}
