"""The data sets the trainer reads, by name: each one's reader of its published format, and its TFDS route.

    mnist, fashion_mnist   the four IDX .gz files (--data-dir, or $JAXCNN_DATA_DIR), else TFDS   (train.data.mnist)
    sun                    notebook 003's folder: DIR/{train,test}/format.json and the images  (train.data.sun)
    cifar10                the binary version (cifar-10-binary.tar.gz or its .bin files), else TFDS  (train.data.cifar10)
"""

from pathlib import Path

from train.data import cifar10, mnist, sun
from train.data.dataset import DataError, Dataset
from train.data.tfds_builder import tensorflow_available

NAMES = ("mnist", "fashion_mnist", "sun", "cifar10")


def load(dataset: str, data_dir: str | Path | None = None, tfds_dir: str | Path | None = None) -> Dataset:
    """The data set `dataset` from `data_dir` in its published format, or through TFDS where it has a builder.

    Returns a train.data.dataset.Dataset: uint8 (N, H, W, C) images with int32 labels, or float32 (N, 2) targets (sun).
    Raises DataError naming the missing or bad file and what --data-dir needs.
    """
    if dataset in mnist.SHA256:
        return mnist.load(dataset, data_dir, tfds_dir)
    if dataset == "sun":
        if not data_dir:
            raise DataError("notebook 003's sun data is not published: pass --data-dir DIR with its "
                            "train/format.json and test/format.json (python -m train.sun make-data --out DIR "
                            "writes one)")
        return sun.load(data_dir)
    if dataset == "cifar10":
        if data_dir:
            return cifar10.load(data_dir)
        if tensorflow_available():
            return cifar10.load_tfds(tfds_dir)
        raise DataError("no data: pass --data-dir with cifar-10-binary.tar.gz (or its extracted "
                        "cifar-10-batches-bin/), or install tensorflow-datasets and tensorflow to download it")
    raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(NAMES)}")
