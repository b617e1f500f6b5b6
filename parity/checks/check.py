"""Run a torch module and a jaxcnn model on the same input and compare (NCHW for torch, NHWC for Flax)."""

import contextlib
import dataclasses
from typing import Any, Iterator

import jax
import numpy as np
import torch
from flax import linen as nn

from jaxcnn import interchange
import jaxcnn
from jaxcnn.interchange import to_nchw  # noqa: F401  (re-exported beside to_nhwc)
from jaxcnn.preprocess import RANGES
from parity.checks import device, referee
from parity.checks.flax_side import flax_side
from parity.checks.referee import relative_difference  # noqa: F401  (re-exported: the measure of every check)


def to_nhwc(x: Any) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C) of an array or a torch tensor; 2-D arrays pass through."""
    return interchange.to_nhwc(to_numpy(x) if isinstance(x, torch.Tensor) else x)


def to_torch(x: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """A writable, C-contiguous torch copy of an array (numpy views of JAX arrays are read-only), on `device`."""
    return torch.from_numpy(np.array(x, copy=True, order="C")).to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A torch tensor (any device, grad or not) as a host numpy array."""
    return t.detach().cpu().numpy()


def sample_input(name: str, shape_nchw: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch, uniform over the value range of the preprocessing `name`'s notebook fed it (raw
    0..255 pixels for lenet5_mnist; jaxcnn.model_config), standard normal for a network fed no images."""
    rng = np.random.default_rng(seed)
    preprocess = jaxcnn.model_config(name).preprocess
    if preprocess is not None:
        return rng.uniform(*RANGES[preprocess], size=shape_nchw).astype(np.float32)
    return rng.standard_normal(shape_nchw).astype(np.float32)


@contextlib.contextmanager
def in_mode(module: torch.nn.Module, train: bool = False) -> Iterator[torch.nn.Module]:
    """The module in train or eval mode for the block, in the mode it had afterwards."""
    was_training = module.training
    module.train(train)
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def exact_numerics() -> Iterator[None]:
    """Full float32 arithmetic on both sides, so that differences measure the port, not the kernels.

    - JAX: matmul precision 'highest' (the backward pass's convolutions and dots too: they take the
      precision in force when they are traced). On a GPU, XLA otherwise rounds conv and matmul inputs
      to TF32 (10-bit mantissa), which alone moves outputs by ~1e-3.
    - torch: TF32 off in cuBLAS and cuDNN, for the same reason; cuDNN deterministic, without benchmark
      (its autotuner may pick another algorithm, with other rounding, on every run).
    - torch: oneDNN (mkldnn) CPU kernels off. Measured on this project's CPU
      (cnn_bn_dropout, eval mode): oneDNN's float32 gradients differ from the
      float64 gradient by up to 4e-2 relative, torch's native kernels and Flax
      by under 1e-6.
    XLA's own GPU determinism is a start-up flag: parity.checks.device.deterministic_xla().
    """
    cudnn = torch.backends.cudnn
    saved = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, torch.backends.mkldnn.enabled,
             cudnn.deterministic, cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False
    torch.backends.mkldnn.enabled = False
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, torch.backends.mkldnn.enabled,
         cudnn.deterministic, cudnn.benchmark) = saved


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Outputs compared as max|y_a - y_b| / max(1, max|y_b|), with both output shapes (NHWC) and the verdict
    of the float64 referee (parity.checks.referee): Flax vs torch, Flax vs float64, torch vs float64."""
    torch_shape: tuple[int, ...]
    flax_shape: tuple[int, ...]
    verdict: referee.Verdict

    @property
    def max_rel_diff(self) -> float:
        return self.verdict.flax_torch

    @property
    def ok(self) -> bool:
        return self.torch_shape == self.flax_shape and self.verdict.ok

    def __str__(self) -> str:
        return f"torch {self.torch_shape} vs flax {self.flax_shape}: {self.verdict}"


def output_difference(y: Any, reference: Any) -> float:
    """max|y - reference| / max(1, max|reference|) for two outputs of one layout (inf when shapes differ)."""
    return referee.relative_difference(y, reference, floor=1.0)


def compare_arrays(y_torch: Any, y_flax: Any, y_float64: Any, rtol: float = 1e-5) -> Comparison:
    """Compares a torch output (NCHW or 2-D) with a Flax one (NHWC or 2-D) and the float64 referee's (NCHW)."""
    a, b, c = to_nhwc(y_torch), np.asarray(y_flax), to_nhwc(y_float64)
    verdict = referee.verdict(output_difference(b, a), output_difference(b, c), output_difference(a, c), rtol)
    return Comparison(tuple(a.shape), tuple(b.shape), verdict)


def compare_layer(torch_layer: torch.nn.Module, flax_layer: nn.Module, variables: Any, x_nchw: Any,
                  rtol: float = 1e-5) -> Comparison:
    """A torch layer and its jaxcnn twin (`variables` converted from it; {} for pools) on one NCHW input,
    judged against the torch layer in float64."""
    x = to_numpy(x_nchw) if isinstance(x_nchw, torch.Tensor) else np.asarray(x_nchw)
    with torch.no_grad():
        y_torch = torch_layer(to_torch(x.astype(np.float32)))
        y_float64 = referee.float64_copy(torch_layer)(to_torch(x.astype(np.float64)))
    y_flax = jax.jit(flax_layer.apply)(variables, to_nhwc(x.astype(np.float32)))  # one compile, not one per op
    return compare_arrays(y_torch, y_flax, y_float64, rtol)


def compare_outputs(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: Any,
                    rtol: float = 1e-5) -> Comparison:
    """Inference outputs of both (torch in eval mode on its module's device, Flax with train=False, or after an
    NNX network's eval(), on JAX's default device) on the same input, judged against torch in float64 on the CPU.

    model, variables: a jaxcnn linen module and its variables, or a jaxcnn NNX network and None."""
    x = np.asarray(x_nchw, np.float32)
    with in_mode(module, train=False), exact_numerics(), torch.no_grad():
        y_torch = module(to_torch(x, device.torch_device_of(module)))
        y_flax = flax_side(model, variables).predict(to_nhwc(x))
        y_float64 = referee.float64_copy(module).eval()(to_torch(x.astype(np.float64)))
    return compare_arrays(y_torch, y_flax, y_float64, rtol)


def assert_same_outputs(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: Any,
                        rtol: float = 1e-5) -> Comparison:
    """`compare_outputs`, raising AssertionError with the figures when shapes differ or the verdict fails."""
    result = compare_outputs(module, model, variables, x_nchw, rtol)
    if not result.ok:
        raise AssertionError(f"outputs differ: {result}")
    return result
