"""python -m train.mnist: train a jaxcnn network on MNIST (or Fashion-MNIST), data-parallel, with checkpoints.

    python -m train.mnist --data-dir ../shared/data/mnist --epochs 1 --out runs/lenet --export-torch runs/lenet/lenet.pt

The recipes are the notebooks': lenet5_mnist (default) on raw 0..255 pixels, Adam 1e-3, batch 100 (notebook
002); mnist_cnn on Normalize(0.5, 0.5) pixels, Adam 1e-3, batch 64, 10 epochs (notebook 004). Weights start
from torch's default distributions (--init torch, the default), so a run trains like the torch original.
"""

import sys

from train import cli
from train.data.mnist import DATA_DIR_ENV

COMMAND = cli.Command(
    prog="python -m train.mnist", doc=__doc__, datasets=("mnist", "fashion_mnist"), model="lenet5_mnist",
    out="runs/mnist", data_dir_help=f"the four IDX .gz files (or set ${DATA_DIR_ENV}); without it, TFDS")


def parse_command_line(argv=None):
    return cli.parse_command_line(argv, COMMAND)


def parse_args(argv=None) -> cli.Config:
    """The run's Config from a command line (checked; recipe defaults filled in)."""
    return cli.config_of(parse_command_line(argv))


def main(argv=None) -> int:
    return cli.main(argv, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
