"""Run a torch module and a jaxcnn model on the same input and compare (NCHW for torch, NHWC for Flax)."""

import contextlib
import dataclasses
from typing import Any, Iterator

import jax
import numpy as np
import torch
from flax import linen as nn


def to_nhwc(x: Any) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C); 2-D arrays pass through."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def to_torch(x: Any) -> torch.Tensor:
    """A writable, C-contiguous torch copy of an array (numpy views of JAX arrays are read-only)."""
    return torch.from_numpy(np.array(x, copy=True, order="C"))


def to_nchw(x: Any) -> np.ndarray:
    """(N, *spatial, C) -> (N, C, *spatial); 2-D arrays pass through."""
    x = np.asarray(x)
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


# What each network was fed in its notebook; standard normal for the rest.
INPUT_RANGES = {"lenet5_mnist": (0.0, 255.0), "mnist_cnn": (-1.0, 1.0), "sun_regressor": (0.0, 1.0)}


def sample_input(name: str, shape_nchw: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch in the value range `name` was trained on (raw pixels for lenet5_mnist)."""
    rng = np.random.default_rng(seed)
    if name in INPUT_RANGES:
        return rng.uniform(*INPUT_RANGES[name], size=shape_nchw).astype(np.float32)
    return rng.standard_normal(shape_nchw).astype(np.float32)


@contextlib.contextmanager
def exact_numerics() -> Iterator[None]:
    """Full float32 arithmetic on both sides, so that differences measure the port, not the kernels.

    - JAX: matmul precision 'highest'. On a GPU, XLA otherwise rounds conv and
      matmul inputs to TF32 (10-bit mantissa), which alone moves outputs by ~1e-3.
    - torch: TF32 off in cuBLAS and cuDNN, for the same reason.
    - torch: oneDNN (mkldnn) CPU kernels off. Measured on this project's CPU
      (cnn_bn_dropout, eval mode): oneDNN's float32 gradients differ from the
      float64 gradient by up to 4e-2 relative, torch's native kernels and Flax
      by under 1e-6.
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.mkldnn.enabled)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.mkldnn.enabled = False
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.mkldnn.enabled) = saved


@dataclasses.dataclass(frozen=True)
class Comparison:
    """max|y_flax - y_torch| against rtol * max(1, max|y_torch|), with both output shapes (NHWC)."""
    torch_shape: tuple[int, ...]
    flax_shape: tuple[int, ...]
    max_abs_diff: float
    scale: float
    rtol: float

    @property
    def max_rel_diff(self) -> float:
        return self.max_abs_diff / self.scale

    @property
    def ok(self) -> bool:
        return self.torch_shape == self.flax_shape and self.max_abs_diff <= self.rtol * self.scale

    def __str__(self) -> str:
        return (f"torch {self.torch_shape} vs flax {self.flax_shape}: max|diff| {self.max_abs_diff:.3g}, "
                f"allowed {self.rtol * self.scale:.3g} (rtol {self.rtol:g} x max(1, max|y_torch|) = {self.scale:.3g})")


def relative_difference(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max|a - b| / max(max|b|, floor) (0 when both are all zero)."""
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, floor)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def compare_arrays(y_torch: Any, y_flax: Any, rtol: float = 1e-5) -> Comparison:
    """Compares a torch output (NCHW or 2-D) with a Flax one (NHWC or 2-D)."""
    a, b = to_nhwc(y_torch).astype(np.float64), np.asarray(y_flax, np.float64)
    diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
    scale = max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
    return Comparison(tuple(a.shape), tuple(b.shape), diff, scale, rtol)


def compare_outputs(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: Any,
                    rtol: float = 1e-5) -> Comparison:
    """Inference outputs of both (torch in eval mode, Flax with train=False) on the same input."""
    x = to_torch(np.asarray(x_nchw, np.float32))
    was_training = module.training
    module.eval()
    try:
        with exact_numerics(), torch.no_grad():
            y_torch = module(x)
            y_flax = model.apply(variables, to_nhwc(x))
    finally:
        module.train(was_training)
    return compare_arrays(y_torch, y_flax, rtol)


def assert_same_outputs(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: Any,
                        rtol: float = 1e-5) -> Comparison:
    """`compare_outputs`, raising AssertionError with the figures when shapes or values differ."""
    result = compare_outputs(module, model, variables, x_nchw, rtol)
    if not result.ok:
        raise AssertionError(f"outputs differ: {result}")
    return result
