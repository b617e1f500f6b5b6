"""`train_and_evaluate(config)`: the whole job behind every training command (`python -m train.mnist`,
`train.sun`, `train.cifar10`) — data, training, checkpoints, exact resume, metrics.json, curves.png and the
torch export — as a function tests and other tools call."""

import dataclasses
import shutil
import time
from pathlib import Path

import jax
from tqdm import tqdm

import jaxcnn
from jaxcnn.imagenet import Preprocessing
from train.data import sources
from train.data.dataset import DataError
from train.trainer import startup
from train.trainer.checkpoint import CheckpointError, Checkpoints, saved_epochs
from train.trainer.data_parallel import Trainer
from train.trainer.export import export_torch
from train.trainer.fit import Settings, TrainingError, fit, place, setup, start_from_weights
from train.trainer.report import plot_curves, write_json
from train.trainer.resume import resume
from train.trainer.step import variables_of
from train.trainer.stream import FolderData


@dataclasses.dataclass
class Config(Settings):
    """Settings (the hyperparameters) and where a run's data, devices and files are."""
    recipe: str | None = None  # the train.trainer.recipes.NAMED entry the command line started from, if any
    data_dir: str | None = None
    tfds_dir: str | None = None
    out: str = "runs/mnist"
    parallel: str = "sharding"
    loop: str = "auto"
    devices: int | None = None
    resume: bool = False
    overwrite: bool = False
    allow_changes: bool = False
    export_torch: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    progress: bool = True
    compile_cache: str | None = None  # a directory for the persistent XLA compilation cache; None: off
    image_size: int | None = None  # streamed image folders: the side of the square images (default: the model's)
    val_fraction: float | None = None  # an image folder without train/ and val/: the share drawn into val
    skip_bad: bool = False  # an image folder's unreadable images: left out (counted) instead of an error
    workers: int = 2  # the input pipeline's worker processes (streamed data)


def load_data(config: Config):
    """The run's data: a train.data.dataset.Dataset held on the devices, or for dataset 'folder' a train.trainer.stream.FolderData
    streamed from disk."""
    if config.dataset == "folder":
        if not config.data_dir:
            raise DataError("--data-dir DIR: the image folder (DIR/train/<class>/*, DIR/val/<class>/*)")
        size = config.image_size or jaxcnn.create_model(config.model).input_shape[0]
        return FolderData.scan(config.data_dir, size, config.val_fraction, config.seed, config.skip_bad,
                               config.workers)
    return sources.load(config.dataset, config.data_dir, config.tfds_dir)


def train_and_evaluate(config: Config) -> dict:
    """Trains and evaluates one run, as `python -m train.mnist` (and every other training command) does.

    It loads the data (`config.dataset` from `config.data_dir`, else TFDS), trains `config.model` data-parallel on
    every local device (or `config.devices` of them), evaluates on the test split after each epoch and writes,
    under `config.out`: `checkpoints/<epoch>` (orbax, atomic, checksummed), `metrics.json`, `curves.png`, and
    with `config.export_torch` the weights under torch's state_dict keys. `config.resume` continues from the
    newest intact checkpoint and ends with the parameters of an uninterrupted run. Prints a line per epoch.

    Arguments:
        config: a `train.trainer.run.Config`: the hyperparameters of `train.trainer.fit.Settings` (model, dataset, epochs,
            batch_size, lr, optimizer, ...; those left None come from the model's recipe on the data set) and
            where the run's data, devices and files are (data_dir, out, devices, resume, overwrite,
            export_torch, train_subset, test_subset, ...).

    Returns:
        The metrics, as written to metrics.json: {'final': {'test_accuracy' (a regression: 'test_mse'),
        'test_loss', 'train_seconds', 'compile_seconds', 'train_compile_seconds', 'eval_compile_seconds',
        'init_seconds'}, 'epochs': [{'epoch', 'train_loss', 'test_loss', 'test_accuracy', 'seconds',
        'seconds_since_start'}, ...], 'config': the settings, 'model_kwargs', 'classes', 'devices', 'backend'}.

    Raises:
        TrainingError: more `devices` than exist; `out` is a file, or holds checkpoints without `resume` or
            `overwrite`; a model that does not take the data; a non-finite or exploding loss (the last good
            checkpoint stays); no intact checkpoint to resume, or one trained with other settings (unless
            `allow_changes`).
        train.data.dataset.DataError: missing or damaged data files (the message names them and what `data_dir` needs).
    """
    if config.devices and config.devices > len(jax.devices()):
        raise TrainingError(f"--devices {config.devices}: only {len(jax.devices())} {jax.devices()[0].platform} "
                            f"device(s) exist; give at most {len(jax.devices())}, or leave --devices out to use all")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file: give a directory for the run's checkpoints and metrics")
    earlier = saved_epochs(out)
    if earlier and not config.resume:
        if not config.overwrite:
            raise TrainingError(f"{out / 'checkpoints'} holds an earlier run's checkpoints (epochs "
                                f"{', '.join(map(str, earlier))}): give --resume to continue it, --overwrite to "
                                "replace them, or another --out")
        if jax.process_index() == 0:
            shutil.rmtree(out / "checkpoints")
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_data(config).subset(config.train_subset, config.test_subset)
    if getattr(dataset, "skipped", ()):
        print(f"skipped {len(dataset.skipped)} unreadable images (--skip-bad): "
              + "; ".join(f"{path} ({why})" for path, why in dataset.skipped[:5]), flush=True)
    if config.compile_cache:
        startup.enable_compile_cache(config.compile_cache)
    devices = jax.devices()[: config.devices] if config.devices else None
    run = setup(config, dataset, devices, config.parallel, config.loop)
    trainer = run.trainer

    init_seconds = time.perf_counter()
    state, dropout_key = trainer.init_state(config.seed)
    init_seconds = time.perf_counter() - init_seconds
    data = place(run, dataset)

    checkpoints = Checkpoints(out)
    state, history = resume(checkpoints, config, state) if config.resume else (state, [])
    if config.weights and not history:
        state, notes = start_from_weights(run, state)
        print(f"started from {config.weights}" + "".join(f"; {n}" for n in notes), flush=True)
    resumed_epochs = len(history)
    if run.stream:
        compile_seconds = run.stream.compile(state, dropout_key, config.batch_size)
    else:
        compile_seconds = trainer.compile(state, data[0], data[1], dropout_key, config.batch_size,
                                          run.steps_per_epoch, test=data[2:])

    described = dataclasses.asdict(config) | {"model_kwargs": run.model_kwargs, "classes": dataset.classes}

    def on_epoch(entry: dict, state) -> None:
        entry["seconds_since_start"] = startup.seconds_since_start()
        history.append(entry)
        print(f"epoch {entry['epoch']}/{config.epochs}: {epoch_summary(entry, run.regression)} "
              f"({entry['seconds']:.1f}s)", flush=True)
        checkpoints.save(entry["epoch"], state, {"epochs": history, "config": described})

    progress = None
    if config.progress and jax.process_index() == 0:
        progress = lambda epoch: ProgressBar(f"epoch {epoch}/{config.epochs}", run.steps_per_epoch, trainer)  # noqa: E731
    try:
        state, _ = fit(run, state, dropout_key, data, history[-1]["epoch"] + 1 if history else 1,
                       on_epoch=on_epoch, progress=progress)
    except CheckpointError as err:
        raise TrainingError(str(err)) from err
    except TrainingError as err:
        kept = (f"the last good checkpoint stays in {checkpoints.directory}" if checkpoints.latest() is not None
                else "no checkpoint was written")
        raise TrainingError(f"{err}; stopped, {kept}") from err
    finally:
        checkpoints.close()
    train_seconds = sum(e["seconds"] for e in history[resumed_epochs:])

    final = history[-1] if history else {"test_loss": float("nan")} | ({} if run.regression else
                                                                         {"test_accuracy": float("nan")})
    scores = {"test_mse": final["test_loss"]} if run.regression else {"test_accuracy": final["test_accuracy"]}
    metrics = {"final": scores | {"test_loss": final["test_loss"],
                                  "train_seconds": train_seconds, "compile_seconds": sum(compile_seconds.values()),
                                  "train_compile_seconds": compile_seconds["train"],
                                  "eval_compile_seconds": compile_seconds["eval"], "init_seconds": init_seconds},
               "epochs": history,
               "config": described | {"devices": trainer.num_devices, "backend": jax.default_backend()}}
    if jax.process_index() == 0:
        write_json(metrics, out / "metrics.json")
        plot_curves(history, out / "curves.png", title=f"{config.model} on {config.dataset}",
                    loss_name="MSE" if run.regression else "cross-entropy")
        if config.export_torch:
            export_torch(run.model, variables_of(trainer.unreplicate(state)), config.export_torch,
                         about_of(config, dataset))
    print(f"{config.model}: {epoch_summary(final, run.regression, last=True)}, train {train_seconds:.1f}s + compile "
          f"{sum(compile_seconds.values()):.1f}s on {trainer.num_devices} {jax.default_backend()} device(s); "
          f"{out / 'metrics.json'}")
    return metrics


def about_of(config: Config, dataset) -> jaxcnn.About:
    """What an export says of itself: the network, the class names, and for photos (a streamed folder) how a
    photo becomes its input (torchvision's resize + centre crop, the run's Normalize)."""
    preprocessing = None
    if isinstance(dataset, FolderData):
        size = dataset.image_size
        # the named preprocessings as Normalize(mean, std) of [0, 1] pixels
        mean, std = (config.mean, config.std) if config.mean is not None else {
            "normalize": ((0.5,) * 3, (0.5,) * 3), "unit": ((0.0,) * 3, (1.0,) * 3),
            "raw": ((0.0,) * 3, (1 / 255,) * 3)}[config.preprocess]
        preprocessing = Preprocessing(resize=int(size * 256 / 224), crop=size, mean=mean, std=std)
    return jaxcnn.About(model=config.model, classes=dataset.classes, preprocessing=preprocessing,
                        source=f"python -m train ({config.dataset}, {config.out})")


def epoch_summary(entry: dict, regression: bool, last: bool = False) -> str:
    """An epoch's figures as the notebooks print them: notebook 003's `loss_mean` and test MSE `Q` for a
    regression, else train loss, test loss and test accuracy (`last`: the test figures only)."""
    if regression:
        test = f"test MSE (Q) {entry['test_loss']:.3f}"
        return test if last else f"loss_mean {entry['train_loss']:.3f}, {test}"
    test = f"test loss {entry['test_loss']:.4f}, test accuracy {100 * entry['test_accuracy']:.2f}%"
    return test if last else f"train loss {entry['train_loss']:.4f}, {test}"


class ProgressBar:
    """A tqdm bar per epoch with the running loss (fetched every ~50 steps: each fetch waits for the device)."""

    def __init__(self, description: str, steps: int, trainer: Trainer):
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
