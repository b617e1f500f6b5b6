"""MNIST (and Fashion-MNIST) as a `train.data.dataset.Dataset`: the four original IDX .gz files, or TFDS.

The IDX route needs no TensorFlow: it reads the files and checks their sha256
against the sums TFDS registers for them. The TFDS route uses the official
builder (downloading where there is a network; offline it takes the same four
files from `<tfds data_dir>/downloads/manual/`). The other data sets' readers
(train.data.sun, train.data.cifar10) give the same `Dataset`; train.data.sources
picks the reader by name.
"""

import gzip
import os
from pathlib import Path

import numpy as np

from train.data.dataset import DataError, Dataset, sha256
from train.data.tfds_builder import load_tfds_builder, tensorflow_available

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# sha256 of the .gz files, as registered in tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt
SHA256 = {
    "mnist": {
        "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train_images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train_labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "test_images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "test_labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
DATA_DIR_ENV = "JAXCNN_DATA_DIR"


DIGITS = tuple(str(d) for d in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path, magic: int, expected_sha256: str | None = None) -> np.ndarray:
    """One gzipped IDX file as a uint8 array, with its checksum, magic number and size checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing data file {path}")
    if expected_sha256 is not None:
        got = sha256(path)
        if got != expected_sha256:
            raise DataError(f"{path} is corrupt or not the original file: sha256 {got}, "
                            f"expected {expected_sha256} (the checksum TFDS registers)")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable gzip file ({err})") from err
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: IDX magic number {got:#010x} where {magic:#010x} was expected"
                        if got is not None else f"{path}: too short for an IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} ({int(np.prod(shape))} bytes), the file holds {body.size}")
    return body.reshape(shape)


def load_idx(data_dir: str | Path, dataset: str = "mnist", verify: bool = True) -> Dataset:
    """The four IDX .gz files of `dataset` in `data_dir`, checked against TFDS's sha256 sums."""
    if dataset not in SHA256:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(SHA256)}")
    data_dir = Path(data_dir)
    missing = [name for name in FILES.values() if not (data_dir / name).is_file()]
    if missing:
        raise DataError(f"{data_dir} lacks {', '.join(missing)}: --data-dir needs the four original {dataset} "
                        f"files ({', '.join(FILES.values())})")
    sums = SHA256[dataset] if verify else {}
    arrays = {key: read_idx(data_dir / name, IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC,
                            sums.get(key)) for key, name in FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"{data_dir}: {len(arrays[f'{split}_images'])} {split} images but "
                            f"{len(arrays[f'{split}_labels'])} labels")
    return Dataset(dataset, *(arrays[k][..., None] if k.endswith("images") else arrays[k].astype(np.int32)
                              for k in FILES), classes=DIGITS if dataset == "mnist" else FASHION)


def load_tfds(dataset: str = "mnist", data_dir: str | Path | None = None,
              manual_dir: str | Path | None = None) -> Dataset:
    """The official TFDS builder of an MNIST-format `dataset` (needs tensorflow and tensorflow-datasets).

    Offline, put (or link) the four .gz files in `manual_dir` (default
    `<data_dir>/downloads/manual`); TFDS verifies their checksums.
    """
    return load_tfds_builder(dataset, data_dir, DOWNLOAD_HOST,
                             f"pass --data-dir DIR with the four IDX .gz files (or set ${DATA_DIR_ENV})",
                             manual_files=FILES.values(), manual_dir=manual_dir)


DOWNLOAD_HOST = "storage.googleapis.com"  # where TFDS's mnist and fashion_mnist builders download from


def load(dataset: str = "mnist", data_dir: str | Path | None = None, tfds_dir: str | Path | None = None) -> Dataset:
    """--data-dir (or $JAXCNN_DATA_DIR) with the IDX files wins; otherwise TFDS, where TensorFlow is installed."""
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if data_dir:
        return load_idx(data_dir, dataset)
    if tensorflow_available():
        return load_tfds(dataset, tfds_dir)
    raise DataError(f"no data: pass --data-dir DIR (or set ${DATA_DIR_ENV}) with the four {dataset} IDX .gz files, "
                    "or install tensorflow-datasets and tensorflow to download them")
