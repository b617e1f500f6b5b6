"""Where a parity check runs: torch and Flax on one device, so that a difference belongs to that device.

The float64 referee (parity.checks.referee) always runs on the CPU. On a GPU, `deterministic_xla()` must be
called before JAX starts its backends (python -m parity does), and `check.exact_numerics()` turns off TF32
and cuDNN's non-deterministic algorithm choice on the torch side.
"""

import contextlib
import dataclasses
import os
from typing import Iterator

import jax
import torch

NAMES = ("cpu", "gpu")
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


class DeviceError(RuntimeError):
    """The device asked for is not there for both frameworks; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class Device:
    name: str  # 'cpu' or 'gpu'
    torch: torch.device
    jax: jax.Device

    def describe(self) -> str:
        if self.name == "gpu":
            return f"{torch.cuda.get_device_name(self.torch)} (torch {self.torch}, jax {self.jax})"
        return f"cpu (jax {self.jax})"


def resolve(name: str = "cpu") -> Device:
    """The device `name` as both frameworks see it; DeviceError when either lacks it."""
    if name == "cpu":
        return Device("cpu", torch.device("cpu"), jax.devices("cpu")[0])
    if name != "gpu":
        raise DeviceError(f"unknown device {name!r}; choose one of {NAMES}")
    if not torch.cuda.is_available():
        raise DeviceError("torch sees no CUDA GPU: install torch's CUDA build (docs/gpu.md), "
                          "or run with --device cpu")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as err:
        raise DeviceError(f"JAX sees no GPU ({err}): pip install -e '.[cuda13]' (or '.[cuda12]'), "
                          "or run with --device cpu") from err
    return Device("gpu", torch.device("cuda", 0), gpus[0])


def default() -> str:
    """'gpu' when both frameworks see one, else 'cpu'."""
    try:
        resolve("gpu")
    except DeviceError:
        return "cpu"
    return "gpu"


@contextlib.contextmanager
def placed(device: Device) -> Iterator[Device]:
    """JAX computations inside run on device.jax (the torch side moves its modules with .to(device.torch))."""
    with jax.default_device(device.jax):
        yield device


def torch_device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module that has neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def deterministic_xla() -> None:
    """Adds XLA's deterministic-GPU-ops flag to XLA_FLAGS: scatter, reductions and the convolution algorithm
    then do not vary between runs. Takes effect only if JAX has not started its backends yet."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_XLA_FLAG.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_XLA_FLAG}".strip()
