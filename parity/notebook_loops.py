"""The torch side of `python -m parity.bench`: the notebooks' training loops, timed on a torch device.

Three ways the course's torch code trains, each `timed_steps(...)` seconds for a number of steps:
- `tensor_loop`: the tensors already on the device (the fastest torch can do eagerly; `compiled=True` wraps
  the module in torch.compile);
- `notebook_002_loop`: notebook 002's loop, the images on the host, each batch indexed and moved with `.to(device)`;
- `notebook_004_loop`: notebook 004's loop, a DataLoader(shuffle=True, num_workers=2) over a dataset that
  makes a PIL image of each sample and applies ToTensor + Normalize(0.5, 0.5), as torchvision's MNIST does.
  Without torchvision (it is never imported here) the two transforms are written out; `torchvision=True`
  uses the real ones where torchvision is installed.
"""

import dataclasses
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

import jaxcnn
from jaxcnn.interchange import to_nchw
from parity import torch_models


def torch_device(jax_platform: str) -> torch.device:
    """The torch device beside JAX's: CUDA when JAX runs on a GPU and torch sees one, else the CPU."""
    if jax_platform == "gpu" and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_tensor_normalize(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor (uint8 HxW -> float 1xHxW in [0, 1]) then Normalize((0.5,), (0.5,))."""
    x = torch.from_numpy(np.array(image, np.uint8, copy=True)).unsqueeze(0).float().div(255.0)
    return (x - 0.5) / 0.5


class PilMnist(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST's __getitem__: a PIL image of the uint8 sample, then `transform`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable = _to_tensor_normalize):
        self.images, self.labels, self.transform = images[..., 0], labels.astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def torchvision_transform() -> Callable:
    import torchvision  # only on request: its wheel does not import beside the CPU torch of the tests

    return torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                           torchvision.transforms.Normalize((0.5,), (0.5,))])


@dataclasses.dataclass
class TorchLoop:
    """`loop(order)` runs the steps of an (steps, batch) index array and waits for the last; `module` trains."""
    module: torch.nn.Module
    run: Callable[[np.ndarray], None]

    def __call__(self, order: np.ndarray) -> None:
        self.run(order)


def _trainer(name: str, device: torch.device, lr: float, compiled: bool = False):
    torch.manual_seed(0)
    module = torch_models.create(name).to(device).train()
    forward = torch.compile(module) if compiled else module
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = criterion(forward(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return module, step


def host_tensors(images: np.ndarray, labels: np.ndarray, preprocess: str) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC uint8 images and labels as torch tensors on the host: (N, 1, H, W) float32, preprocessed, and int64."""
    x = np.array(jaxcnn.preprocess(preprocess, images), np.float32)  # (N, 28, 28, 1); a writable copy
    return torch.from_numpy(to_nchw(x).copy()), torch.from_numpy(labels.astype(np.int64))


def tensor_loop(name: str, images: np.ndarray, labels: np.ndarray, preprocess: str, lr: float, batch_size: int,
                device: torch.device, compiled: bool = False) -> TorchLoop:
    """The notebooks' step on tensors resident on `device` (the fastest torch trains eagerly, or compiled)."""
    x, y = (t.to(device) for t in host_tensors(images, labels, preprocess))
    module, step = _trainer(name, device, lr, compiled)

    def run(order: np.ndarray) -> None:
        for indices in torch.from_numpy(order).to(device):
            loss = step(x[indices], y[indices])
        loss.item()

    return TorchLoop(module, run)


def notebook_002_loop(name: str, images: np.ndarray, labels: np.ndarray, preprocess: str, lr: float,
                      batch_size: int, device: torch.device) -> TorchLoop:
    """Notebook 002: X_train on the host, `X_train[batch_indexes].to(device)` for every batch."""
    x, y = host_tensors(images, labels, preprocess)
    module, step = _trainer(name, device, lr)

    def run(order: np.ndarray) -> None:
        for indices in order:
            loss = step(x[indices].to(device), y[indices].to(device))
        loss.item()

    return TorchLoop(module, run)


def notebook_004_loop(name: str, images: np.ndarray, labels: np.ndarray, preprocess: str, lr: float,
                      batch_size: int, device: torch.device, torchvision: bool = False,
                      num_workers: int = 2) -> TorchLoop:
    """Notebook 004: DataLoader(PIL MNIST + ToTensor + Normalize, shuffle=True, num_workers=2), batches moved.

    The images are normalized whatever `preprocess` says: this is the notebook's pipeline, timed."""
    dataset = PilMnist(images, labels, torchvision_transform() if torchvision else _to_tensor_normalize)
    # spawned workers: forking a process that runs JAX's threads can deadlock. They start once (persistent),
    # in the caller's warm-up.
    workers = dict(num_workers=num_workers, persistent_workers=True, multiprocessing_context="spawn") if num_workers else {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, **workers)
    module, step = _trainer(name, device, lr)

    def run(order: np.ndarray) -> None:
        batches = iter(loader)
        for _ in range(len(order)):
            x, y = next(batches)
            loss = step(x.to(device), y.to(device))
        loss.item()

    return TorchLoop(module, run)


def timed_steps(run: Callable[[np.ndarray], None], order: np.ndarray, device: torch.device) -> float:
    """Seconds `run(order)` takes, the device synchronised at both ends."""
    synchronize(device)
    start = time.perf_counter()
    run(order)
    synchronize(device)
    return time.perf_counter() - start
