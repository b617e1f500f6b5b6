"""The inspection tools as a torch user writes them, for parity with jaxcnn.inspect.

Gradient saliency and guided backprop by autograd on the input (guided: a full backward hook on
every nn.ReLU that clamps its input gradient at 0); occlusion by an explicit loop over patch
positions. All in eval mode, NCHW.
"""

import contextlib
from typing import Iterator

import numpy as np
import torch

from parity.checks.check import in_mode, to_torch


@contextlib.contextmanager
def guided_relus(module: torch.nn.Module) -> Iterator[None]:
    """Guided backprop hooks on every nn.ReLU (in-place ReLUs made out-of-place meanwhile: hooks need that)."""
    relus = [m for m in module.modules() if isinstance(m, torch.nn.ReLU)]
    saved = [m.inplace for m in relus]

    def clamp(_module, grad_input, _grad_output):
        return tuple(None if g is None else g.clamp(min=0) for g in grad_input)

    handles = []
    try:
        for relu in relus:
            relu.inplace = False
            handles.append(relu.register_full_backward_hook(clamp))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for relu, inplace in zip(relus, saved):
            relu.inplace = inplace


def input_gradients(module: torch.nn.Module, x_nchw, classes, guided: bool = False) -> np.ndarray:
    """d score_c / d x for each image and its class: (N, C, H, W), classes (N,) -> (N, C, H, W)."""
    x = to_torch(x_nchw).requires_grad_(True)
    classes = torch.as_tensor(np.broadcast_to(np.asarray(classes), (x.shape[0],)).copy(), dtype=torch.long)
    with in_mode(module, train=False), (guided_relus(module) if guided else contextlib.nullcontext()):
        module(x).gather(1, classes[:, None]).sum().backward()
    return x.grad.numpy()


def gradient_saliency(module: torch.nn.Module, x_nchw, classes) -> np.ndarray:
    """max over channels of |d score_c / d x|: (N, C, H, W) -> (N, H, W)."""
    return np.abs(input_gradients(module, x_nchw, classes)).max(axis=1)


def occlusion(module: torch.nn.Module, image_chw, target: int, size: int, stride: int, fill: float = 0.0) -> np.ndarray:
    """Probability of `target` with each (size x size) patch set to `fill`: (C, H, W) -> (out_h, out_w)."""
    image = to_torch(image_chw)
    _, height, width = image.shape
    tops, lefts = range(0, height - size + 1, stride), range(0, width - size + 1, stride)
    result = np.zeros((len(tops), len(lefts)), np.float32)
    with in_mode(module, train=False), torch.no_grad():
        for i, top in enumerate(tops):
            for j, left in enumerate(lefts):
                occluded = image.clone()
                occluded[:, top:top + size, left:left + size] = fill
                result[i, j] = torch.softmax(module(occluded[None]), dim=1)[0, target].item()
    return result
