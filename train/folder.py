"""python -m train.folder: train or fine-tune a registry network on your own photos, one folder per class.

    python -m parity pretrained alexnet --out alexnet.safetensors
    python -m train.folder --data-dir photos --model alexnet --weights alexnet.safetensors --freeze features \\
        --out runs/photos

--data-dir is torchvision's ImageFolder layout: DIR/train/<class>/* and DIR/val/<class>/* (or DIR/<class>/* and
--val-fraction F, split by a seeded draw); class names sorted as ImageFolder sorts them, kept in metrics.json
and the checkpoints. JPEG, PNG, WebP, BMP (torchvision's extensions). Images are decoded and augmented on worker
processes (grain; --workers) while the devices train: RandomResizedCrop to the model's size and a horizontal
flip, evaluation resize + centre crop, normalised with the weights' mean/std (ImageNet's for parity pretrained's
files) or --mean/--std. --weights starts from a torch-keyed .safetensors with a fresh head for your classes;
--freeze keeps layers as they are. The default recipe folder_finetune: Adam 1e-4, the head at 1e-3, batch 32,
5 epochs.
"""

import argparse
import sys

from train import cli


def _own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val-fraction", type=cli.between(0.0, 1.0), help="one folder of classes: the share of each "
                                                                      "class drawn into val (seeded by --seed)")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable images (counted) instead of failing")
    p.add_argument("--image-size", type=cli.at_least(16), help="the side of the square inputs (default the model's)")
    p.add_argument("--workers", type=cli.at_least(0), default=2, help="decoding worker processes (0: in-process)")
    p.add_argument("--mean", type=float, nargs=3, help="Normalize's mean of [0, 1] RGB (default: the weights')")
    p.add_argument("--std", type=float, nargs=3, help="Normalize's std (default: the weights')")


COMMAND = cli.Command(
    prog="python -m train.folder", doc=__doc__, datasets=("folder",), model="alexnet", out="runs/folder",
    recipe="folder_finetune", add_arguments=_own_flags,
    data_dir_help="an ImageFolder tree: DIR/train/<class>/*, DIR/val/<class>/* (or DIR/<class>/* with --val-fraction)")


def main(argv=None) -> int:
    return cli.main(argv, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
