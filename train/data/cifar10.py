"""CIFAR-10 as a `train.data.dataset.Dataset`, from its official binary version or from TFDS.

The binary version (`cifar-10-binary.tar.gz`, holding `cifar-10-batches-bin/`) is six files of fixed-size
records: one label byte (0..9), then 3072 pixel bytes, channel-major (1024 red, 1024 green, 1024 blue, each a
32x32 image row by row). It is read straight from the archive (checksummed against the sum TFDS registers,
never extracted) or from the extracted files. The pickled Python version is refused: unpickling runs code.
"""

import dataclasses
import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from train.data.dataset import DataError, Dataset, sha256
from train.data.tfds_builder import load_tfds_builder


ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
URL = f"https://www.cs.toronto.edu/~kriz/{ARCHIVE}"
DOWNLOAD_HOST = "www.cs.toronto.edu"
# size and sha256 of the archive, as registered in tensorflow_datasets/url_checksums/cifar10.txt
ARCHIVE_SIZE = 170052171
SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FILES = TRAIN_FILES + (TEST_FILE,)
META = "batches.meta.txt"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIDE, CHANNELS = 32, 3
RECORD = 1 + SIDE * SIDE * CHANNELS
PICKLED_ARCHIVE, PICKLED_FOLDER = "cifar-10-python.tar.gz", "cifar-10-batches-py"
PICKLED_FILES = tuple(name.removesuffix(".bin") for name in FILES) + ("batches.meta",)
NEEDS = (f"--data-dir needs CIFAR-10's binary version: {ARCHIVE} ({URL}), a folder holding it, or its extracted "
         f"{FOLDER}/ ({', '.join(FILES)})")


def _pickled(path: Path) -> DataError:
    return DataError(f"{path} is CIFAR-10's pickled Python version, which jaxcnn does not read (unpickling runs "
                          f"code): download the binary version {ARCHIVE} ({URL}) instead and pass it, or the folder "
                          "holding it, as --data-dir")


def _decode(raw: bytes, source) -> tuple[np.ndarray, np.ndarray]:
    """Records as uint8 images (N, 32, 32, 3) and int32 labels (N,)."""
    if not raw or len(raw) % RECORD:
        raise DataError(f"{source}: {len(raw)} bytes is not a whole number of records (a record is 1 label byte "
                             f"+ 3072 pixel bytes = {RECORD}): the file is truncated or not a CIFAR-10 binary file")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    bad = np.flatnonzero(rows[:, 0] > 9)
    if bad.size:
        raise DataError(f"{source}: record {bad[0]} has label {rows[bad[0], 0]}, but CIFAR-10's labels are "
                             f"0..9: not a CIFAR-10 binary file (CIFAR-100's records have two label bytes)")
    images = rows[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), rows[:, 0].astype(np.int32)


def _encode(images: np.ndarray, labels: np.ndarray) -> bytes:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != (SIDE, SIDE, CHANNELS) or labels.shape != images.shape[:1]:
        raise ValueError(f"need uint8 images (N, 32, 32, 3) and labels (N,), got {images.dtype} {images.shape} "
                         f"and {labels.shape}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"labels must be 0..9, got {labels.min()}..{labels.max()}")
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def _dataset(contents: dict[str, bytes], where) -> Dataset:
    """The Dataset from the six files' bytes (and batches.meta.txt's, where present), keyed by file name."""
    train = [_decode(contents[name], f"{where}/{name}") for name in TRAIN_FILES]
    test_images, test_labels = _decode(contents[TEST_FILE], f"{where}/{TEST_FILE}")
    classes = CLASSES
    if META in contents:
        classes = tuple(line.strip() for line in contents[META].decode("utf-8", "replace").splitlines() if line.strip())
        if len(classes) != len(CLASSES):
            raise DataError(f"{where}/{META} names {len(classes)} classes, CIFAR-10 has {len(CLASSES)}")
    return Dataset("cifar10", np.concatenate([images for images, _ in train]),
                        np.concatenate([labels for _, labels in train]), test_images, test_labels, classes=classes)


def _from_archive(path: Path, verify: bool) -> Dataset:
    if verify:
        got = sha256(path)
        if got != SHA256:
            raise DataError(f"{path} is not the original archive: sha256 {got} ({path.stat().st_size} bytes), "
                                 f"expected {SHA256} ({ARCHIVE_SIZE} bytes, the checksum TFDS registers); download "
                                 f"it again from {URL}")
    contents = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if PICKLED_FOLDER in name.parts:
                    raise _pickled(path)
                if member.isfile() and name.parent.name == FOLDER and name.name in FILES + (META,):
                    contents[name.name] = tar.extractfile(member).read()
            while tar.fileobj.read(1 << 20):  # to the end, where gzip checks its CRC (tar stops at a bad header)
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path} is not a readable tar.gz archive ({err}): it is corrupt or truncated; "
                             f"download {ARCHIVE} again from {URL}") from err
    missing = [f"{FOLDER}/{name}" for name in FILES if name not in contents]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: not CIFAR-10's binary archive; {NEEDS}")
    return _dataset(contents, f"{path}:{FOLDER}")


def _from_folder(folder: Path) -> Dataset:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}: {NEEDS}")
    names = FILES + ((META,) if (folder / META).is_file() else ())
    return _dataset({name: (folder / name).read_bytes() for name in names}, folder)


def load(path: str | Path, verify: bool = True) -> Dataset:
    """CIFAR-10's binary version, from the archive or its extracted files.

    Arguments:
        path: the `--data-dir`: the archive `cifar-10-binary.tar.gz` itself, a folder holding it, a folder holding
            `cifar-10-batches-bin/`, or a folder holding the six .bin files.
        verify: check the archive's sha256 against the one TFDS registers (extracted files have no checksum).
    Returns:
        Dataset "cifar10": train images uint8 (50000, 32, 32, 3) with int32 labels (50000,), test images
        (10000, 32, 32, 3) with labels (10000,), the 10 class names.
    """
    path = Path(path)
    if path.is_file():
        if path.name in (PICKLED_ARCHIVE,) + PICKLED_FILES or path.parent.name == PICKLED_FOLDER:
            raise _pickled(path)
        return _from_archive(path, verify)
    if not path.is_dir():
        raise DataError(f"{path} does not exist: {NEEDS}")
    if path.name == PICKLED_FOLDER:
        raise _pickled(path)
    for folder in (path, path / FOLDER):
        if any((folder / name).is_file() for name in FILES):
            return _from_folder(folder)
    if (path / ARCHIVE).is_file():
        return _from_archive(path / ARCHIVE, verify)
    for pickled in (path / PICKLED_ARCHIVE, path / PICKLED_FOLDER, path / PICKLED_FILES[0]):
        if pickled.exists():
            raise _pickled(pickled)
    raise DataError(f"{path} holds no CIFAR-10 data: {NEEDS}")


def load_tfds(data_dir: str | Path | None = None) -> Dataset:
    """TFDS's `cifar10` builder (needs tensorflow and tensorflow-datasets; downloads from www.cs.toronto.edu).

    Returns:
        Dataset "cifar10" as `load` gives it: uint8 (N, 32, 32, 3) images, int32 (N,) labels, the 10 class names
        (the builder reads them from batches.meta.txt while preparing; its metadata alone names them '0'..'9').
    """
    dataset = load_tfds_builder("cifar10", data_dir, DOWNLOAD_HOST,
                                     f"pass --data-dir with {ARCHIVE} ({URL}), or its extracted {FOLDER}/")
    return dataclasses.replace(dataset, classes=CLASSES)


def write_binary(folder: str | Path, images: np.ndarray, labels: np.ndarray, name: str) -> Path:
    """One .bin file in the official record format: the exact inverse of the reader.

    Arguments:
        images: uint8 (N, 32, 32, 3). labels: (N,) integers 0..9. name: the file name, e.g. "data_batch_1.bin".
    Returns:
        The file's path, `folder / name` (N * 3073 bytes).
    """
    path = Path(folder) / name
    path.write_bytes(_encode(images, labels))
    return path


def write_archive(path: str | Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                  test_labels: np.ndarray) -> Path:
    """A `cifar-10-binary.tar.gz` laid out as the official one, the train split spread over the five batches.

    Arguments:
        train_images, test_images: uint8 (N, 32, 32, 3). train_labels, test_labels: (N,) integers 0..9.
    Returns:
        `path`, an archive holding cifar-10-batches-bin/ with data_batch_1..5.bin, test_batch.bin, batches.meta.txt.
    """
    path = Path(path)
    members = {name: _encode(images, labels) for name, images, labels in zip(
        TRAIN_FILES, np.array_split(train_images, len(TRAIN_FILES)), np.array_split(train_labels, len(TRAIN_FILES)))}
    members[TEST_FILE] = _encode(test_images, test_labels)
    members[META] = ("\n".join(CLASSES) + "\n\n").encode()
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size, info.mode = len(raw), 0o644
            tar.addfile(info, io.BytesIO(raw))
    return path
