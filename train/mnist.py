"""python -m train.mnist: train a jaxcnn network on MNIST (or Fashion-MNIST), data-parallel, with checkpoints.

    python -m train.mnist --data-dir ../shared/data/mnist --epochs 1 --out runs/lenet --export-torch runs/lenet/lenet.pt

The recipes are the notebooks': lenet5_mnist (default) on raw 0..255 pixels, Adam 1e-3, batch 100 (notebook
002); mnist_cnn on Normalize(0.5, 0.5) pixels, Adam 1e-3, batch 64, 10 epochs (notebook 004). Weights start
from torch's default distributions (--init torch, the default), so a run trains like the torch original.
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxcnn
from train import data as data_lib
from train import startup
from train.checkpoint import Checkpoints
from train import recipes
from train.optimizers import OPTIMIZERS, SCHEDULES, create_optimizer, learning_rate
from train.report import plot_curves, write_json
from train.step import Trainer, epoch_order

RESUME_MUST_MATCH = ("model", "dataset", "optimizer", "batch_size", "preprocess", "seed", "train_subset", "schedule",
                     "warmup_fraction", "label_smoothing")


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a model that does not take MNIST); the message says why."""


@dataclasses.dataclass
class Config:
    model: str = "lenet5_mnist"
    recipe: str | None = None  # the train.recipes.NAMED entry the command line started from, if any
    dataset: str = "mnist"
    data_dir: str | None = None
    tfds_dir: str | None = None
    out: str = "runs/mnist"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float = 0.0
    schedule: str | None = None  # 'constant' (lr throughout) or 'onecycle' (lr the peak); see train.recipes
    warmup_fraction: float | None = None
    label_smoothing: float | None = None  # torch's CrossEntropyLoss(label_smoothing=...), training loss only
    preprocess: str | None = None
    seed: int = 0
    init: str = "torch"
    parallel: str = "sharding"
    loop: str = "auto"
    devices: int | None = None
    resume: bool = False
    export_torch: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    progress: bool = True
    compile_cache: str | None = None  # a directory for the persistent XLA compilation cache; None: off

    def __post_init__(self):
        recipe = recipes.for_model(self.model) | dict(schedule="constant", warmup_fraction=0.25, label_smoothing=0.0)
        for key, value in recipe.items():
            if getattr(self, key) is None:
                setattr(self, key, value)


def build_model(name: str, init: str):
    """The registry model configured for 28x28x1 images and 10 classes, and the kwargs that did it."""
    if name not in jaxcnn.list_models():
        raise TrainingError(f"unknown model {name!r}; available: {', '.join(jaxcnn.list_models())}")
    probe = jaxcnn.create_model(name)
    kwargs = {k: v for k, v in (("in_channels", 1), ("input_size", 28), ("num_classes", 10))
              if hasattr(probe, k) and getattr(probe, k) != v}
    model = jaxcnn.create_model(name, weight_init=init, **kwargs)
    try:
        jax.eval_shape(lambda: model.init(jax.random.key(0), jax.numpy.zeros((1, 28, 28, 1))))
    except (ValueError, TypeError) as err:
        raise TrainingError(f"model {name!r} does not take MNIST's 28x28x1 images: {err}") from err
    if not hasattr(probe, "num_classes"):
        raise TrainingError(f"model {name!r} is not a classifier (it has no num_classes)")
    return model, kwargs


def _first_bad(losses: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else None


def run(config: Config) -> dict:
    """Trains and evaluates; writes checkpoints, metrics.json and curves.png under config.out."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model, model_kwargs = build_model(config.model, config.init)
    dataset = data_lib.load(config.dataset, config.data_dir, config.tfds_dir)
    dataset = dataset.subset(config.train_subset, config.test_subset)
    if config.compile_cache:
        startup.enable_compile_cache(config.compile_cache)
    steps_per_epoch = len(dataset.train_labels) // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{len(dataset.train_labels)} training images make no batch of {config.batch_size}")
    lr = learning_rate(config.lr, config.schedule, config.epochs * steps_per_epoch, config.warmup_fraction)
    tx = create_optimizer(config.optimizer, lr, config.weight_decay)
    devices = jax.devices()[: config.devices] if config.devices else None
    trainer = Trainer(model, tx, config.preprocess, config.parallel, config.loop, devices=devices,
                      label_smoothing=config.label_smoothing)
    if config.batch_size % trainer.num_devices:
        raise TrainingError(f"--batch-size {config.batch_size} must be divisible by the {trainer.num_devices} devices")

    init_seconds = time.perf_counter()
    state, dropout_key = trainer.init_state(config.seed)
    init_seconds = time.perf_counter() - init_seconds
    train_images, train_labels = trainer.put_replicated((dataset.train_images, dataset.train_labels))
    test_images, test_labels = trainer.put_replicated((dataset.test_images, dataset.test_labels))

    checkpoints = Checkpoints(out)
    state, history = _resume(checkpoints, config, state) if config.resume else (state, [])
    start_epoch = history[-1]["epoch"] if history else 0

    compile_seconds = trainer.compile(state, train_images, train_labels, dropout_key, config.batch_size,
                                      steps_per_epoch, test=(test_images, test_labels))
    train_seconds = 0.0
    for epoch in range(start_epoch + 1, config.epochs + 1):
        order = epoch_order(config.seed, epoch, len(dataset.train_labels), config.batch_size)
        bar = ProgressBar(f"epoch {epoch}/{config.epochs}", steps_per_epoch, trainer) if _shows_progress(config) else None
        seconds = time.perf_counter()
        state, losses = trainer.train_steps(state, train_images, train_labels, order, dropout_key,
                                            on_losses=bar.update if bar else None)
        epoch_losses = trainer.host_losses(losses)  # waits for the last step
        seconds = time.perf_counter() - seconds
        train_seconds += seconds
        if bar:
            bar.close()
        bad = _first_bad(epoch_losses)
        if bad is not None:
            raise TrainingError(f"loss is {epoch_losses[bad]} at step {bad + 1} of epoch {epoch} (global step "
                                f"{(epoch - 1) * steps_per_epoch + bad + 1}); stopped, the last good checkpoint "
                                f"stays in {checkpoints.directory}")
        test_loss, test_accuracy = trainer.evaluate(state, test_images, test_labels)
        history.append({"epoch": epoch, "train_loss": float(epoch_losses.mean()), "test_loss": test_loss,
                        "test_accuracy": test_accuracy, "seconds": seconds,
                        "seconds_since_start": startup.seconds_since_start()})
        print(f"epoch {epoch}/{config.epochs}: train loss {history[-1]['train_loss']:.4f}, test loss {test_loss:.4f}, "
              f"test accuracy {100 * test_accuracy:.2f}% ({seconds:.1f}s)", flush=True)
        checkpoints.save(epoch, state, {"epochs": history, "config": dataclasses.asdict(config)})
    checkpoints.close()

    final = history[-1] if history else {"test_loss": float("nan"), "test_accuracy": float("nan")}
    metrics = {"final": {"test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
                         "train_seconds": train_seconds, "compile_seconds": sum(compile_seconds.values()),
                         "train_compile_seconds": compile_seconds["train"],
                         "eval_compile_seconds": compile_seconds["eval"], "init_seconds": init_seconds},
               "epochs": history,
               "config": dataclasses.asdict(config) | {"model_kwargs": model_kwargs,
                                                       "devices": trainer.num_devices,
                                                       "backend": jax.default_backend()}}
    if jax.process_index() == 0:
        write_json(metrics, out / "metrics.json")
        plot_curves(history, out / "curves.png", title=f"{config.model} on {config.dataset}")
        if config.export_torch:
            export_torch(config.model, model, model_kwargs, trainer.unreplicate(state), config.export_torch)
    print(f"{config.model}: test accuracy {100 * final['test_accuracy']:.2f}%, test loss {final['test_loss']:.4f}, "
          f"train {train_seconds:.1f}s + compile {sum(compile_seconds.values()):.1f}s on {trainer.num_devices} "
          f"{jax.default_backend()} device(s); {out / 'metrics.json'}")
    return metrics


def _resume(checkpoints: Checkpoints, config: Config, state) -> tuple:
    """The newest checkpoint's state and epoch history (none: the given state, no history)."""
    latest = checkpoints.latest()
    if latest is None:
        return state, []
    saved = checkpoints.meta(latest).get("config", {})
    must_match = RESUME_MUST_MATCH + (("epochs", "lr") if config.schedule == "onecycle" else ())  # the schedule's span
    changed = {k: (saved.get(k), getattr(config, k)) for k in must_match
               if saved.get(k, getattr(config, k)) != getattr(config, k)}
    if changed:
        raise TrainingError(f"cannot resume: the checkpoint was trained with other settings {changed} (saved, now)")
    try:
        state, meta = checkpoints.restore(latest, state)
    except ValueError as err:
        raise TrainingError(f"cannot resume from {checkpoints.directory / str(latest)}: {err}") from err
    print(f"resumed from {checkpoints.directory / str(latest)}")
    return state, meta["epochs"]


def export_torch(name: str, model, model_kwargs: dict, state, path: str) -> None:
    """Writes a state_dict that parity.torch_models.create(name, **model_kwargs) loads with strict=True."""
    from parity import convert, io, torch_models

    module = torch_models.create(name, **model_kwargs)
    variables = {"params": state.params} | ({"batch_stats": state.batch_stats} if state.batch_stats else {})
    sd = convert.flax_to_torch(variables, model, module)
    module.load_state_dict(sd, strict=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    io.save_torch_state(sd, path)


def _shows_progress(config: Config) -> bool:
    return config.progress and jax.process_index() == 0


class ProgressBar:
    """A tqdm bar per epoch with the running loss (fetched every ~50 steps: each fetch waits for the device)."""

    def __init__(self, description: str, steps: int, trainer: Trainer):
        from tqdm import tqdm

        self.bar = tqdm(total=steps, desc=description, unit="step", leave=False, mininterval=0.5)
        self.trainer, self.since_fetch = trainer, 0

    def update(self, steps: int, device_losses) -> None:
        self.bar.update(steps)
        self.since_fetch += steps
        if self.since_fetch >= 50:
            self.since_fetch = 0
            self.bar.set_postfix(loss=f"{self.trainer.host_losses([device_losses])[-1]:.4f}")

    def close(self) -> None:
        self.bar.close()


def parse_args(argv=None) -> Config:
    p = argparse.ArgumentParser(prog="python -m train.mnist", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a registry model that takes 28x28x1 (default lenet5_mnist)")
    p.add_argument("--recipe", choices=sorted(recipes.NAMED),
                   help="a named recipe of train.recipes: its model and settings, unless given here")
    p.add_argument("--dataset", default="mnist", choices=sorted(data_lib.SHA256))
    p.add_argument("--data-dir", help=f"the four IDX .gz files (or set ${data_lib.DATA_DIR_ENV}); without it, TFDS")
    p.add_argument("--tfds-dir", help="TFDS data_dir (offline: put the .gz files in <dir>/downloads/manual)")
    p.add_argument("--out", default="runs/mnist", help="checkpoints, metrics.json, curves.png")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--weight-decay", type=float, default=0.0, help="torch's meaning for the optimizer chosen")
    p.add_argument("--schedule", choices=SCHEDULES, help="constant lr (default) or one-cycle with --lr its peak")
    p.add_argument("--warmup-fraction", type=float, help="one-cycle: the share of steps warming up (default 0.25)")
    p.add_argument("--label-smoothing", type=float, help="as torch's CrossEntropyLoss(label_smoothing=...) (default 0)")
    p.add_argument("--preprocess", choices=["raw", "normalize"], help="raw 0..255 or Normalize(0.5, 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=["torch", "flax"], default="torch",
                   help="torch: U(+-1/sqrt(fan_in)) like torch's defaults (default); flax: LeCun normal, zero bias")
    p.add_argument("--parallel", choices=["sharding", "pmap"], default="sharding")
    p.add_argument("--loop", choices=["auto", "step", "scan"], default="auto")
    p.add_argument("--devices", type=int, help="use the first N devices (default: all, of every process)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint under --out")
    p.add_argument("--export-torch", metavar="PATH", help="write a torch state_dict (.pt) of the trained model")
    p.add_argument("--train-subset", type=int, help="train on the first N images only")
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test images only")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--compile-cache", default=str(startup.default_cache_dir()), metavar="DIR",
                   help="persistent XLA compilation cache (default: $JAX_COMPILATION_CACHE_DIR, else "
                        "$XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn)")
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_const", const=None,
                   help="compile everything afresh and keep nothing")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (or $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=int, help="multi-host: process count (or $JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=int, help="multi-host: this process (or $JAX_PROCESS_ID)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.lr is not None and not args.lr > 0:
        p.error("--lr must be > 0")
    if args.warmup_fraction is not None and not 0 < args.warmup_fraction < 1:
        p.error("--warmup-fraction must be between 0 and 1")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing < 1:
        p.error("--label-smoothing must be in [0, 1)")
    for key, value in (recipes.named(args.recipe) if args.recipe else {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.model = args.model or "lenet5_mnist"
    _init_distributed(args)
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in fields})


def _init_distributed(args) -> None:
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        return
    num = args.num_processes or int(os.environ["JAX_NUM_PROCESSES"])
    pid = args.process_id if args.process_id is not None else int(os.environ["JAX_PROCESS_ID"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(coordinator, num_processes=num, process_id=pid)


def main(argv=None) -> int:
    try:
        run(parse_args(argv))
    except (data_lib.DataError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
