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

import jax

from jaxcnn.files import error_line
from jaxcnn.preprocess import PREPROCESS
from train import data as data_lib
from train import recipes, startup
from train.fit import TrainingError
from train.optimizers import OPTIMIZERS, SCHEDULES
from train.run import Config, train_and_evaluate


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


def parse_command_line(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.mnist", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a registry model that takes 28x28x1 (default lenet5_mnist)")
    p.add_argument("--recipe", choices=sorted(recipes.NAMED),
                   help="a named recipe of train.recipes: its model and settings, unless given here")
    p.add_argument("--dataset", default="mnist", choices=sorted(data_lib.SHA256))
    p.add_argument("--data-dir", help=f"the four IDX .gz files (or set ${data_lib.DATA_DIR_ENV}); without it, TFDS")
    p.add_argument("--tfds-dir", help="TFDS data_dir (offline: put the .gz files in <dir>/downloads/manual)")
    p.add_argument("--out", default="runs/mnist", help="checkpoints, metrics.json, curves.png")
    p.add_argument("--epochs", type=at_least(1))
    p.add_argument("--batch-size", type=at_least(1))
    p.add_argument("--lr", type=above(0.0))
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--weight-decay", type=at_least(0.0, float), default=0.0, help="torch's meaning for the optimizer chosen")
    p.add_argument("--schedule", choices=SCHEDULES, help="constant lr (default) or one-cycle with --lr its peak")
    p.add_argument("--warmup-fraction", type=between(0.0, 1.0), help="one-cycle: the share of steps warming up (default 0.25)")
    p.add_argument("--label-smoothing", type=between(0.0, 1.0, low_included=True), help="as torch's CrossEntropyLoss(label_smoothing=...) (default 0)")
    p.add_argument("--preprocess", choices=sorted(PREPROCESS),
                   help="raw 0..255, unit [0, 1] (ToTensor) or normalize (ToTensor + Normalize(0.5, 0.5))")
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
    p.add_argument("--export-torch", metavar="PATH", help="write a torch state_dict (.pt) of the trained model")
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
    args = p.parse_args(argv)
    for key, value in (recipes.named(args.recipe) if args.recipe else {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.model = args.model or "lenet5_mnist"
    if args.optimizer == "adam_l2" and not args.weight_decay > 0:
        p.error("--optimizer adam_l2 is torch's Adam(weight_decay=...), L2 added to the gradient: give "
                "--weight-decay > 0 (or --optimizer adam)")
    return args


def config_of(args: argparse.Namespace) -> Config:
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in fields})


def parse_args(argv=None) -> Config:
    """The run's Config from a command line (checked; recipe defaults filled in)."""
    return config_of(parse_command_line(argv))


def init_distributed(args: argparse.Namespace) -> None:
    """jax.distributed.initialize from --coordinator/--num-processes/--process-id or the JAX_* variables."""
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        return
    num = args.num_processes or int(os.environ["JAX_NUM_PROCESSES"])
    pid = args.process_id if args.process_id is not None else int(os.environ["JAX_PROCESS_ID"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(coordinator, num_processes=num, process_id=pid)


def main(argv=None) -> int:
    args = parse_command_line(argv)
    init_distributed(args)
    try:
        train_and_evaluate(config_of(args))
    except (data_lib.DataError, TrainingError, OSError) as err:  # OSError: a full or read-only disk, ...
        if args.debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
