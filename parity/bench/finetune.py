"""The fine-tuning rows of python -m parity.bench: a registry network at 224x224 (AlexNet, VGG-16) fine-tuned on a
folder of photos with `features` frozen, as train.folder runs it, beside torch's DataLoader + eager step (and
torch.compile), on the same device.

Per row, images/s of: the loader alone (train.data.pipeline's grain loader; torch's DataLoader over the same
transforms), the step alone (one batch already on the device, repeated) and the whole pipeline (loader + step).
"""

import contextlib
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import torch
from PIL import Image

import jaxcnn
from parity.checks.trainer_steps import frozen_parts
from parity.originals import notebook_loops, torch_models
from train.data import pipeline
from train.trainer import fit
from train.trainer.stream import FolderData
from train.trainer.timing import median_seconds

CLASSES = 5


def photo_folder(root: Path, count: int, seed: int = 0) -> Path:
    """`count` 320x240 JPEG photos (noise over colour gradients) in root/{train,val}/<class>/."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        split = "val" if (i // CLASSES) % 4 == 3 else "train"  # a quarter of each class
        folder = root / split / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.linspace(rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), 320)[None].repeat(240, 0)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


class TransformedFolder(torch.utils.data.Dataset):
    """torchvision's ImageFolder + RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize (the same
    transforms as train.data.pipeline's, written once there)."""

    def __init__(self, records, size: int):
        self.records, self.size = list(records), size
        self.mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
        self.std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        path, label = self.records[i]
        pixels = pipeline.train_transform(pipeline.decode(path), self.size, np.random.default_rng(i))
        x = torch.from_numpy(np.array(pixels, np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
        return (x - self.mean) / self.std, label


def _warm_batches(workers: int) -> int:
    """Batches taken before a loader is timed: one per worker process (each worker makes every workers-th batch,
    so the last to start gives the workers-th), or one in-process."""
    return max(workers, 1)


def _rate(seconds: float, images: int) -> float:
    return images / seconds if seconds > 0 else float("inf")


def flax_rates(name: str, stream: FolderData, batch: int, steps: int, repeats: int) -> dict:
    settings = fit.Settings(model=name, dataset="folder", batch_size=batch, epochs=1, lr=1e-4, lr_head=1e-3,
                            optimizer="adam", augment="random_resized_crop", freeze=("features",),
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    run = fit.setup(settings, stream, devices=jax.devices()[:1])
    state, key = run.trainer.init_state(0)
    start = time.perf_counter()
    run.stream.compile(state, key, batch)
    compile_seconds = time.perf_counter() - start
    images, labels = run.stream.put(next(iter(stream.train_batches(batch, 0, 1))))

    def steps_alone():
        nonlocal state
        for _ in range(steps):
            state, loss = run.stream._step(state, images, labels, key)
        jax.block_until_ready(loss)

    def timed(work) -> float:
        """Median seconds of `work` over `steps` batches of an epoch whose workers have all started (one batch
        per worker taken first); each epoch's workers are stopped before the next starts."""
        seconds = []
        for _ in range(repeats):
            epoch = iter(stream.train_batches(batch, 0, 1))
            for _ in range(_warm_batches(stream.workers)):
                next(epoch)
            start = time.perf_counter()
            work(b for _, b in zip(range(steps), epoch))
            seconds.append(time.perf_counter() - start)
            epoch.close()  # else its workers run on, prefetching, beside the next repeat's
        return _rate(float(np.median(seconds)), steps * batch)

    def whole(batches):
        nonlocal state
        state, losses = run.stream.train_epoch(state, batches, key)
        jax.block_until_ready(losses[-1])

    steps_alone()  # warm-up
    return {"flax_step_images_per_s": _rate(median_seconds(steps_alone, repeats), steps * batch),
            "flax_loader_images_per_s": timed(lambda batches: sum(1 for _ in batches)),
            "flax_pipeline_images_per_s": timed(whole), "flax_compile_seconds": compile_seconds,
            "loader_workers": stream.workers}


def torch_rates(name: str, stream: FolderData, batch: int, steps: int, repeats: int, device,
                compiled: bool = False, workers: int = 2) -> dict:
    torch.manual_seed(0)
    module = torch_models.create(name, num_classes=CLASSES).to(device)
    frozen = frozen_parts(module, ("features",))
    forward = torch.compile(module) if compiled else module
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(TransformedFolder(stream.train, stream.image_size), batch_size=batch,
                                         shuffle=True, drop_last=True, num_workers=workers,
                                         **({"multiprocessing_context": "spawn", "persistent_workers": True}
                                            if workers else {}))

    def step(x, y):
        module.train()
        for part in frozen:
            part.eval()
        loss = criterion(forward(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    x, y = (t.to(device) for t in next(iter(loader)))  # persistent workers: started here, once

    def started():
        """An epoch's batches with one per worker already out, as flax_rates times its loader."""
        batches = iter(loader)
        for _ in range(_warm_batches(workers)):
            next(batches)
        return (b for _, b in zip(range(steps), batches))

    def steps_alone():
        for _ in range(steps):
            loss = step(x, y)
        loss.item()

    def whole(batches):
        for xb, yb in batches:
            loss = step(xb.to(device), yb.to(device))
        loss.item()

    def timed(work, fresh: bool = True) -> float:
        seconds = []
        for _ in range(repeats):
            batches = started() if fresh else None
            seconds.append(notebook_loops.timed_steps(lambda _: work(batches), None, device))
        return _rate(float(np.median(seconds)), steps * batch)

    steps_alone()  # warm-up (and compilation)
    prefix = "torch_compile" if compiled else "torch_eager"
    rates = {f"{prefix}_step_images_per_s": timed(lambda _: steps_alone(), fresh=False),
             f"{prefix}_pipeline_images_per_s": timed(whole)}
    if not compiled:
        rates["torch_loader_images_per_s"] = timed(lambda batches: sum(1 for _ in batches))
    return rates


def finetune_rows(names, batch: int = 32, steps: int = 3, repeats: int = 2, photos: int = 512,
                  folder: str | None = None, with_compile: bool = False, workers: int = 2) -> dict:
    """{name: row} for each network, on `folder` (an ImageFolder tree) or generated JPEGs (`photos`, or as many
    as the timing takes); both loaders with `workers` processes (each timed run takes steps + max(workers, 1)
    batches of an epoch)."""
    device = notebook_loops.torch_device(jax.default_backend())
    needed = (steps + _warm_batches(workers)) * batch  # training images; photo_folder puts 3/4 of them there
    photos = max(photos, -(-needed * 4 // (3 * 4 * CLASSES)) * 4 * CLASSES)
    rows = {}
    with contextlib.ExitStack() as stack:
        root = Path(folder) if folder else photo_folder(Path(stack.enter_context(tempfile.TemporaryDirectory())),
                                                        photos)
        for name in names:
            size = jaxcnn.create_model(name).input_shape[0]
            stream = FolderData.scan(root, size, workers=workers)
            row = flax_rates(name, stream, batch, steps, repeats) | torch_rates(name, stream, batch, steps, repeats,
                                                                                 device, workers=workers)
            if with_compile:
                try:
                    row |= torch_rates(name, stream, batch, steps, repeats, device, compiled=True,
                                       workers=workers)
                except Exception as err:  # torch.compile needs a working inductor toolchain
                    row["torch_compile_error"] = f"{type(err).__name__}: {err}"[:300]
            row["loader_over_step"] = row["flax_loader_images_per_s"] / row["flax_step_images_per_s"]
            rows[name] = row | {"batch_size": batch, "steps_timed": steps, "image_size": size,
                                "train_images": len(stream.train), "frozen": "features"}
    return rows
