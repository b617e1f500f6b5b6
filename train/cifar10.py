"""python -m train.cifar10: train a jaxcnn network on CIFAR-10 (32x32 RGB, 10 classes), data-parallel.

    python -m train.cifar10 --data-dir DIR --out runs/cifar10

--data-dir holds CIFAR-10's binary version: cifar-10-binary.tar.gz (its sha256 is checked), its extracted
cifar-10-batches-bin/, or the six .bin files; the pickled Python version is never read. Without --data-dir,
TFDS's cifar10 (downloaded where there is a network). The default is recipe cifar10_conv_mlp: notebook 004's
cifar_conv_mlp with torchvision's CIFAR augmentation; --recipe cifar10_cnn trains notebook 004's MNIST network
on 3 channels. Any registry network that takes 32x32x3 trains with --model (built with in_channels=3,
input_size=32, num_classes=10).
"""

import sys

from train import cli

COMMAND = cli.Command(
    prog="python -m train.cifar10", doc=__doc__, datasets=("cifar10",), model="cifar_conv_mlp",
    out="runs/cifar10", recipe="cifar10_conv_mlp",
    data_dir_help="cifar-10-binary.tar.gz, or a folder with it, with cifar-10-batches-bin/ or with the .bin files; "
                  "without it, TFDS")


def main(argv=None) -> int:
    return cli.main(argv, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
