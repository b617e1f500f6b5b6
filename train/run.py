"""`train_and_evaluate(config)`: the whole job behind `python -m train.mnist` — data, training, checkpoints,
exact resume, metrics.json, curves.png and the torch export — as a function tests and other tools call."""

import dataclasses
import shutil
import time
from pathlib import Path

import jax
from tqdm import tqdm

from train import data as data_lib
from train import startup
from train.checkpoint import CheckpointError, Checkpoints, saved_epochs
from train.export import export_torch
from train.fit import Settings, TrainingError, fit, setup
from train.report import plot_curves, write_json
from train.resume import resume
from train.step import Trainer, variables_of


@dataclasses.dataclass
class Config(Settings):
    """Settings (the hyperparameters) and where a run's data, devices and files are."""
    recipe: str | None = None  # the train.recipes.NAMED entry the command line started from, if any
    dataset: str = "mnist"
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


def train_and_evaluate(config: Config) -> dict:
    """Trains and evaluates; writes checkpoints, metrics.json and curves.png under config.out. Returns the metrics."""
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
    dataset = data_lib.load(config.dataset, config.data_dir, config.tfds_dir)
    dataset = dataset.subset(config.train_subset, config.test_subset)
    if config.compile_cache:
        startup.enable_compile_cache(config.compile_cache)
    devices = jax.devices()[: config.devices] if config.devices else None
    run = setup(config, len(dataset.train_labels), devices, config.parallel, config.loop)
    trainer = run.trainer

    init_seconds = time.perf_counter()
    state, dropout_key = trainer.init_state(config.seed)
    init_seconds = time.perf_counter() - init_seconds
    data = (*trainer.put_replicated((dataset.train_images, dataset.train_labels)),
            *trainer.put_replicated((dataset.test_images, dataset.test_labels)))

    checkpoints = Checkpoints(out)
    state, history = resume(checkpoints, config, state) if config.resume else (state, [])
    resumed_epochs = len(history)
    compile_seconds = trainer.compile(state, data[0], data[1], dropout_key, config.batch_size, run.steps_per_epoch,
                                      test=data[2:])

    def on_epoch(entry: dict, state) -> None:
        entry["seconds_since_start"] = startup.seconds_since_start()
        history.append(entry)
        print(f"epoch {entry['epoch']}/{config.epochs}: train loss {entry['train_loss']:.4f}, test loss "
              f"{entry['test_loss']:.4f}, test accuracy {100 * entry['test_accuracy']:.2f}% "
              f"({entry['seconds']:.1f}s)", flush=True)
        checkpoints.save(entry["epoch"], state, {"epochs": history, "config": dataclasses.asdict(config)})

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

    final = history[-1] if history else {"test_loss": float("nan"), "test_accuracy": float("nan")}
    metrics = {"final": {"test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
                         "train_seconds": train_seconds, "compile_seconds": sum(compile_seconds.values()),
                         "train_compile_seconds": compile_seconds["train"],
                         "eval_compile_seconds": compile_seconds["eval"], "init_seconds": init_seconds},
               "epochs": history,
               "config": dataclasses.asdict(config) | {"model_kwargs": run.model_kwargs,
                                                       "devices": trainer.num_devices,
                                                       "backend": jax.default_backend()}}
    if jax.process_index() == 0:
        write_json(metrics, out / "metrics.json")
        plot_curves(history, out / "curves.png", title=f"{config.model} on {config.dataset}")
        if config.export_torch:
            export_torch(run.model, variables_of(trainer.unreplicate(state)), config.export_torch)
    print(f"{config.model}: test accuracy {100 * final['test_accuracy']:.2f}%, test loss {final['test_loss']:.4f}, "
          f"train {train_seconds:.1f}s + compile {sum(compile_seconds.values()):.1f}s on {trainer.num_devices} "
          f"{jax.default_backend()} device(s); {out / 'metrics.json'}")
    return metrics


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
