"""The command line every training command shares (`train.mnist`, `train.sun`, `train.cifar10`): one parser,
checked flags, a Config, and one-line failures. Each command is a `Command` naming its data and defaults."""

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable

import jax

import jaxcnn
from jaxcnn.files import error_line
from jaxcnn.preprocess import PREPROCESS
from train.data.augment import AUGMENTATIONS
from train.data.dataset import DataError
from train.trainer import recipes, startup
from train.trainer.fit import TrainingError
from train.trainer.optimizers import OPTIMIZERS, SCHEDULES
from train.trainer.run import Config, train_and_evaluate


@dataclasses.dataclass(frozen=True)
class Command:
    """A training command: its program name and help, the data sets it reads, and what it trains by default."""
    prog: str
    doc: str
    datasets: tuple[str, ...]
    model: str  # the default model, whose recipe on the data set applies
    out: str  # the default --out
    data_dir_help: str
    recipe: str | None = None  # a train.trainer.recipes.NAMED entry used without --recipe (and, if it names a model,
    # without --model)
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None  # the command's own flags


def _number(kind, ok, rule: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def at_least(minimum, kind=int):
    return _number(kind, lambda v: v >= minimum, f">= {minimum:g}")


def above(minimum: float):
    return _number(float, lambda v: v > minimum, f"> {minimum:g}")


def between(low: float, high: float, low_included: bool = False):
    return _number(float, lambda v: (low <= v if low_included else low < v) and v < high,
                   f"in {'[' if low_included else '('}{low:g}, {high:g})")


def build_parser(command: Command) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=command.prog, description=command.doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"a registry model (default {command.model}); it is built for the data's image "
                                   "size, channels and classes")
    p.add_argument("--recipe", choices=sorted(recipes.NAMED),
                   help="a named recipe of train.trainer.recipes: its model and settings, unless given here")
    p.add_argument("--dataset", default=command.datasets[0], choices=command.datasets)
    p.add_argument("--data-dir", help=command.data_dir_help)
    p.add_argument("--tfds-dir", help="TFDS data_dir (offline: see the data set's --data-dir instead)")
    p.add_argument("--out", default=command.out, help="checkpoints, metrics.json, curves.png")
    p.add_argument("--epochs", type=at_least(1))
    p.add_argument("--batch-size", type=at_least(1))
    p.add_argument("--lr", type=above(0.0))
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--weight-decay", type=at_least(0.0, float), help="torch's meaning for the optimizer chosen")
    p.add_argument("--schedule", choices=SCHEDULES, help="constant lr (default) or one-cycle with --lr its peak")
    p.add_argument("--warmup-fraction", type=between(0.0, 1.0), help="one-cycle: the share of steps warming up (default 0.25)")
    p.add_argument("--label-smoothing", type=between(0.0, 1.0, low_included=True), help="as torch's CrossEntropyLoss(label_smoothing=...) (default 0)")
    p.add_argument("--preprocess", choices=sorted(PREPROCESS),
                   help="raw 0..255, unit [0, 1] (ToTensor) or normalize (ToTensor + Normalize(0.5, 0.5))")
    p.add_argument("--augment", choices=AUGMENTATIONS,
                   help="training augmentation: flip (RandomHorizontalFlip), crop_flip (RandomCrop(padding=4) too)")
    p.add_argument("--weights", metavar="FILE", help="start from a torch-keyed .safetensors (python -m parity "
                   "pretrained's, an --export-torch): strict, but for a head of another size, drawn fresh")
    p.add_argument("--freeze", nargs="+", default=(), metavar="PREFIX",
                   help="torch prefixes (e.g. features) whose parameters and BatchNorm statistics stay as they are")
    p.add_argument("--lr-head", type=above(0.0), help="the output layer's learning rate (default --lr)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="compute dtype: bfloat16 computes forward and backward in bfloat16, keeping parameters, "
                        "optimizer state, the loss and BatchNorm statistics in float32 (for GPUs and TPUs)")
    p.add_argument("--api", choices=["linen", "nnx"], default="linen",
                   help="linen: the registry's Flax linen module (default); nnx: its native Flax NNX network, "
                        "trained by the same steps, checkpointed, resumed and exported alike")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=["torch", "flax"], default="torch",
                   help="torch: U(+-1/sqrt(fan_in)) like torch's defaults (default); flax: LeCun normal, zero bias")
    p.add_argument("--parallel", choices=["sharding", "pmap"], default="sharding")
    p.add_argument("--loop", choices=["auto", "step", "scan"], default="auto")
    p.add_argument("--devices", type=at_least(1), help="use the first N devices (default: all, of every process)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint under --out")
    p.add_argument("--allow-changes", action="store_true",
                   help="--resume with settings other than the checkpoint's (warns, naming them)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints an earlier run left in --out (without it such an --out is refused)")
    p.add_argument("--export-torch", metavar="PATH", help="write a torch state_dict (.pt/.safetensors) of the trained model")
    p.add_argument("--train-subset", type=at_least(1), help="train on the first N images only")
    p.add_argument("--test-subset", type=at_least(1), help="evaluate on the first N test images only")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("--compile-cache", default=str(startup.default_cache_dir()), metavar="DIR",
                   help="persistent XLA compilation cache (default: $JAX_COMPILATION_CACHE_DIR, else "
                        "$XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn)")
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_const", const=None,
                   help="compile everything afresh and keep nothing")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (or $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=at_least(1), help="multi-host: process count (or $JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=at_least(0), help="multi-host: this process (or $JAX_PROCESS_ID)")
    if command.add_arguments:
        command.add_arguments(p)
    return p


def parse_command_line(argv, command: Command) -> argparse.Namespace:
    """The flags, with the recipe's settings filled in where the command line leaves them out; a flag out of
    range or a combination that cannot train (adam_l2 without weight decay) exits 2 naming it."""
    p = build_parser(command)
    args = p.parse_args(argv)
    recipe = args.recipe or command.recipe
    if recipe and not args.recipe and args.model is not None and "model" in recipes.named(recipe):
        recipe = None  # the command's default recipe is its default model's
    for key, value in (recipes.named(recipe) if recipe else {}).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.recipe = recipe
    args.model = args.model or command.model
    if args.weights and getattr(args, "mean", None) is None and Path(args.weights).is_file():
        about = jaxcnn.read_about(args.weights).preprocessing  # pretrained weights: the normalisation they expect
        if about is not None:
            args.mean, args.std = about.mean, about.std
    try:
        config_of(args)
    except ValueError as err:
        p.error(str(err))
    return args


def config_of(args: argparse.Namespace) -> Config:
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in fields})


def init_distributed(args: argparse.Namespace) -> None:
    """jax.distributed.initialize from --coordinator/--num-processes/--process-id or the JAX_* variables."""
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        return
    num = args.num_processes or int(os.environ["JAX_NUM_PROCESSES"])
    pid = args.process_id if args.process_id is not None else int(os.environ["JAX_PROCESS_ID"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(coordinator, num_processes=num, process_id=pid)


def main(argv, command: Command) -> int:
    """Runs the command: 0 when trained, 1 with one `error: ...` line (--debug: the traceback) when it cannot."""
    args = parse_command_line(argv, command)
    init_distributed(args)
    try:
        train_and_evaluate(config_of(args))
    except (DataError, TrainingError, OSError) as err:  # OSError: a full or read-only disk, ...
        if args.debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 1
    return 0
