"""The torch side of `python -m parity.bench`: the notebooks' training loops, timed on a torch device.

The ways the course's torch code trains, each `timed_steps(...)` seconds for a number of steps:
- `tensor_loop`: the tensors already on the device (the fastest torch can do eagerly; `compiled=True` wraps
  the module in torch.compile);
- `notebook_002_loop`: notebook 002's loop, the images on the host, each batch indexed and moved with `.to(device)`;
- `notebook_004_loop`: notebook 004's loop, a DataLoader(shuffle=True, num_workers=2) over a dataset that
  makes a PIL image of each sample and applies ToTensor + Normalize(0.5, 0.5), as torchvision's MNIST does.
  Without torchvision (it is never imported here) the two transforms are written out; `torchvision=True`
  uses the real ones where torchvision is installed;
- `notebook_loop` over `SunFiles`: notebook 003's loop, its Dataset of image files (format.json, PIL, RGB,
  ToImage + ToDtype(scale=True)) in a DataLoader; over `RgbImages`, the same loop for CIFAR-10's records
  (ToTensor + Normalize(0.5, 0.5) of each PIL image, as torchvision's CIFAR10 dataset gives them).
"""

import json
import os

import dataclasses
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

import jaxcnn
from jaxcnn.interchange import to_nchw
from parity.originals import torch_models
from train.data import pipeline


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


class SunFiles(torch.utils.data.Dataset):
    """Notebook 003's SunDataset: `path/{train,test}/format.json` maps file names to [x, y]; each image is
    opened with PIL, converted to RGB, then ToImage + ToDtype(dtype, scale=True): (3, H, W) in [0, 1], and its
    target as the notebook's float32 tensor, in `dtype`."""

    def __init__(self, path: str, train: bool = True, dtype: torch.dtype = torch.float32):
        self.path = os.path.join(path, "train" if train else "test")
        with open(os.path.join(self.path, "format.json"), "r") as fp:
            self.format = json.load(fp)
        self.files, self.targets, self.dtype = tuple(self.format), tuple(self.format.values()), dtype

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int):
        image = Image.open(os.path.join(self.path, self.files[item])).convert("RGB")
        x = torch.from_numpy(np.array(image, np.uint8, copy=True)).permute(2, 0, 1).to(self.dtype) / 255.0
        # the notebook's float32 targets (what the trainer holds too), then in the dtype computed in
        return x, torch.tensor(self.targets[item], dtype=torch.float32).to(self.dtype)


class RgbImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's __getitem__ on NHWC uint8 records: a PIL RGB image, then ToTensor +
    Normalize((0.5,) * 3, (0.5,) * 3), written out (torchvision is not imported), in `dtype`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, dtype: torch.dtype = torch.float32):
        self.images, self.labels, self.dtype = images, labels.astype(np.int64), dtype

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i], mode="RGB")
        x = torch.from_numpy(np.array(image, np.uint8, copy=True)).permute(2, 0, 1).to(self.dtype) / 255.0
        return (x - 0.5) / 0.5, int(self.labels[i])


class FolderImages(torch.utils.data.Dataset):
    """torchvision's ImageFolder with its evaluation transform: each image file converted to RGB, Resize(the
    shorter side to size * 256 / 224) + CenterCrop(size) (train.data.pipeline's), ToTensor, Normalize(mean, std)."""

    def __init__(self, records, size: int, mean, std, dtype: torch.dtype = torch.float32):
        self.records, self.size, self.dtype = list(records), size, dtype
        self.mean, self.std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in (mean, std))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        path, label = self.records[i]
        pixels = pipeline.eval_transform(pipeline.decode(path), self.size)
        x = torch.from_numpy(np.array(pixels, np.uint8, copy=True)).permute(2, 0, 1).to(self.dtype) / 255.0
        return (x - self.mean.to(self.dtype)) / self.std.to(self.dtype), int(label)


def notebook_loop(module: torch.nn.Module, loader, optimizer: torch.optim.Optimizer,
                  loss_function: torch.nn.Module, device: torch.device = torch.device("cpu"),
                  frozen: tuple[torch.nn.Module, ...] = ()) -> list[float]:
    """The notebooks' epoch: model.train() (and `frozen` submodules back to eval(), as fine-tuning does); for
    each batch of `loader`: predict, loss, zero_grad, backward, step. Returns every step's loss (their mean is
    notebook 003's `loss_mean`)."""
    module.train()
    for part in frozen:
        part.eval()
    losses = []
    for x, y in loader:
        loss = loss_function(module(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


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


def _trainer(name: str, device: torch.device, lr: float, compiled: bool = False, weight_decay: float = 0.0):
    """The notebooks' module, Adam(lr, weight_decay) (torch's L2) and loss (the model's config: CrossEntropyLoss
    or notebook 003's MSELoss)."""
    torch.manual_seed(0)
    module = torch_models.create(name).to(device).train()
    forward = torch.compile(module) if compiled else module
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    criterion = torch.nn.MSELoss() if jaxcnn.model_config(name).loss == "mse" else torch.nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = criterion(forward(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return module, step


def host_tensors(images: np.ndarray, labels: np.ndarray, preprocess: str) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC uint8 images and labels as torch tensors on the host: (N, C, H, W) float32, preprocessed, and int64
    labels (or float32 regression targets (N, K))."""
    x = np.array(jaxcnn.preprocess(preprocess, images), np.float32)  # (N, H, W, C); a writable copy
    y = labels.astype(np.float32 if np.issubdtype(labels.dtype, np.floating) else np.int64)
    return torch.from_numpy(to_nchw(x).copy()), torch.from_numpy(y)


def tensor_loop(name: str, images: np.ndarray, labels: np.ndarray, preprocess: str, lr: float, batch_size: int,
                device: torch.device, compiled: bool = False, weight_decay: float = 0.0) -> TorchLoop:
    """The notebooks' step on tensors resident on `device` (the fastest torch trains eagerly, or compiled)."""
    x, y = (t.to(device) for t in host_tensors(images, labels, preprocess))
    module, step = _trainer(name, device, lr, compiled, weight_decay)

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
                      num_workers: int = 2, dataset: torch.utils.data.Dataset | None = None,
                      weight_decay: float = 0.0) -> TorchLoop:
    """Notebook 004: DataLoader(PIL MNIST + ToTensor + Normalize, shuffle=True, num_workers=2), batches moved.

    The images are normalized whatever `preprocess` says: this is the notebook's pipeline, timed. `dataset`
    replaces the MNIST one (CIFAR-10's RgbImages; notebook 003's SunFiles, with num_workers=0 as it has)."""
    if dataset is None:
        dataset = PilMnist(images, labels, torchvision_transform() if torchvision else _to_tensor_normalize)
    # spawned workers: forking a process that runs JAX's threads can deadlock. They start once (persistent),
    # in the caller's warm-up.
    workers = dict(num_workers=num_workers, persistent_workers=True, multiprocessing_context="spawn") if num_workers else {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, **workers)
    module, step = _trainer(name, device, lr, weight_decay=weight_decay)

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
