"""train.data.cifar10: CIFAR-10's binary version read from every accepted --data-dir form, its errors, and TFDS."""

import gzip
import shutil
import tarfile
import time

import numpy as np
import pytest

from train.data import cifar10 as cifar, tfds_builder
from train.data.dataset import DataError, sha256

# batches.meta.txt as the official archive holds it
REAL_META = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"


@pytest.fixture
def splits(rng):
    """50 train images over five batches, 20 test: uint8 (N, 32, 32, 3) with labels 0..9."""
    return (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 50),
            rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 20))


@pytest.fixture
def archive(tmp_path, splits):
    (tmp_path / "archive").mkdir()
    return cifar.write_archive(tmp_path / "archive" / cifar.ARCHIVE, *splits)


def extracted(archive, into):
    """The archive's cifar-10-batches-bin/ under `into`, extracted for the test (the reader never extracts)."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                target = into / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    return into / cifar.FOLDER


def assert_same(dataset, splits):
    train_images, train_labels, test_images, test_labels = splits
    assert dataset.name == "cifar10" and dataset.classes == cifar.CLASSES
    for got, want in ((dataset.train_images, train_images), (dataset.train_labels, train_labels),
                      (dataset.test_images, test_images), (dataset.test_labels, test_labels)):
        np.testing.assert_array_equal(got, want)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int32
    assert dataset.train_images.shape == (50, 32, 32, 3) and dataset.test_images.shape == (20, 32, 32, 3)


def test_record_layout_is_channel_major(tmp_path, splits):
    blue = (np.arange(32 * 32) % 251).astype(np.uint8)  # row-major: pixel (row, col) holds (32 * row + col) % 251
    record = bytes([7]) + bytes([1] * 1024) + bytes([2] * 1024) + blue.tobytes()
    (tmp_path / cifar.TEST_FILE).write_bytes(record)
    for name, images, labels in zip(cifar.TRAIN_FILES, np.split(splits[0], 5), np.split(splits[1], 5)):
        cifar.write_binary(tmp_path, images, labels, name)
    dataset = cifar.load(tmp_path)
    image = dataset.test_images[0]
    assert dataset.test_labels.tolist() == [7] and image.shape == (32, 32, 3)
    assert (image[..., 0] == 1).all() and (image[..., 1] == 2).all()
    np.testing.assert_array_equal(image[..., 2], blue.reshape(32, 32))
    assert image[1, 0, 2] == 32 and image[0, 1, 2] == 1
    (tmp_path / "again").mkdir()
    again = cifar.write_binary(tmp_path / "again", dataset.test_images, dataset.test_labels, "t.bin")
    assert again.read_bytes() == record


def test_every_data_dir_form_gives_the_same_dataset(tmp_path, splits, archive):
    folder = extracted(archive, tmp_path / "parent")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in cifar.FILES:
        shutil.copy(folder / name, flat / name)  # no batches.meta.txt: the built-in names
    for path in (archive, archive.parent, folder.parent, folder, flat):
        assert_same(cifar.load(path, verify=False), splits)
    assert len(cifar.load(archive, verify=False).train_images) == 50


def test_meta_names_are_the_built_in_ones(tmp_path, splits):
    for name, images, labels in zip(cifar.TRAIN_FILES + (cifar.TEST_FILE,), np.split(splits[0], 5) + [splits[2]],
                                    np.split(splits[1], 5) + [splits[3]]):
        cifar.write_binary(tmp_path, images, labels, name)
    (tmp_path / cifar.META).write_text(REAL_META)
    assert cifar.load(tmp_path).classes == cifar.CLASSES
    (tmp_path / cifar.META).write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"batches\.meta\.txt names 2 classes, CIFAR-10 has 10"):
        cifar.load(tmp_path)


def test_archive_checksum_is_checked(archive, splits):
    got = sha256(archive)
    for path in (archive, archive.parent):
        with pytest.raises(DataError, match=rf"{cifar.ARCHIVE} is not the original archive: sha256 {got} .*"
                                                 rf"expected {cifar.SHA256} \(170052171 bytes"):
            cifar.load(path)
    assert_same(cifar.load(archive, verify=False), splits)


def test_missing_bin_files(tmp_path, archive):
    folder = extracted(archive, tmp_path)
    (folder / "data_batch_3.bin").unlink()
    (folder / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"lacks data_batch_3\.bin, test_batch\.bin: --data-dir needs CIFAR-10's "
                                             r"binary version: cifar-10-binary\.tar\.gz"):
        cifar.load(tmp_path)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "data_batch_1.bin", f"{cifar.FOLDER}/data_batch_1.bin")
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-bin/data_batch_2\.bin, .*test_batch\.bin: not "
                                             r"CIFAR-10's binary archive"):
        cifar.load(archive, verify=False)


def test_size_not_a_multiple_of_a_record(tmp_path, archive):
    folder = extracted(archive, tmp_path)
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"data_batch_2\.bin: 30729 bytes is not a whole number of records "
                                             r"\(a record is 1 label byte \+ 3072 pixel bytes = 3073\)"):
        cifar.load(folder)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"data_batch_2\.bin: 0 bytes"):
        cifar.load(folder)


def test_label_out_of_range(tmp_path, archive):
    folder = extracted(archive, tmp_path)
    raw = bytearray((folder / cifar.TEST_FILE).read_bytes())
    raw[3 * cifar.RECORD] = 10
    (folder / cifar.TEST_FILE).write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test_batch\.bin: record 3 has label 10, but CIFAR-10's labels are "
                                             r"0\.\.9"):
        cifar.load(folder)


@pytest.mark.parametrize("form", ["archive", "archive in folder", "folder", "folder in folder", "unsuffixed batch"])
def test_pickled_version_is_refused(tmp_path, form):
    pickled = tmp_path / "d" / ("cifar-10-python.tar.gz" if "archive" in form else "cifar-10-batches-py")
    pickled.parent.mkdir()
    if "archive" in form:
        pickled.write_bytes(gzip.compress(b"not read"))
    else:
        pickled.mkdir()
        (pickled / "data_batch_1").write_bytes(b"not read")
    path = {"archive in folder": pickled.parent, "folder in folder": pickled.parent,
            "unsuffixed batch": pickled / "data_batch_1"}.get(form, pickled)
    with pytest.raises(DataError, match=r"pickled Python version, which jaxcnn does not read \(unpickling runs "
                                             r"code\): download the binary version cifar-10-binary\.tar\.gz"):
        cifar.load(path)


def test_pickled_members_in_an_archive_are_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not read")
    path = tmp_path / cifar.ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", "cifar-10-batches-py")
    with pytest.raises(DataError, match="pickled Python version"):
        cifar.load(path, verify=False)


def test_corrupt_archive(tmp_path, archive, rng):
    raw = archive.read_bytes()
    cases = {"random": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "truncated": raw[:len(raw) // 2],
             "flipped": raw[:200] + bytes(b ^ 0xFF for b in raw[200:400]) + raw[400:], "empty": b""}
    for name, corrupt in cases.items():
        path = tmp_path / name / cifar.ARCHIVE
        path.parent.mkdir()
        path.write_bytes(corrupt)
        with pytest.raises(DataError, match=rf"{name}/cifar-10-binary\.tar\.gz is not a readable tar\.gz archive"):
            cifar.load(path.parent, verify=False)


def test_folder_without_data(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no CIFAR-10 data: --data-dir needs CIFAR-10's binary version"):
        cifar.load(tmp_path)
    with pytest.raises(DataError, match=r"absent does not exist: --data-dir needs"):
        cifar.load(tmp_path / "absent")


def test_write_binary_rejects_what_is_not_cifar(tmp_path):
    with pytest.raises(ValueError, match=r"uint8 images \(N, 32, 32, 3\)"):
        cifar.write_binary(tmp_path, np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2), "x.bin")
    with pytest.raises(ValueError, match=r"labels must be 0\.\.9"):
        cifar.write_binary(tmp_path, np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 10]), "x.bin")


def test_tfds_route_on_mock_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds_builder, "reachable", lambda host, *args, **kwargs: True)  # mock_data stands in for the download
    with tfds.testing.mock_data(num_examples=12):
        dataset = cifar.load_tfds(tmp_path / "tfds")
    assert dataset.name == "cifar10" and dataset.classes == cifar.CLASSES
    for images, labels in ((dataset.train_images, dataset.train_labels), (dataset.test_images, dataset.test_labels)):
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3) and len(images) > 0
        assert labels.dtype == np.int32 and labels.shape == images.shape[:1] and labels.max() <= 9


def test_tfds_offline_without_data_names_data_dir(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    hosts = []
    monkeypatch.setattr(tfds_builder, "reachable", lambda host, *args, **kwargs: hosts.append(host) and False)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"www\.cs\.toronto\.edu unreachable.*pass --data-dir with "
                                             r"cifar-10-binary\.tar\.gz .*or its extracted cifar-10-batches-bin/"):
        cifar.load_tfds(tmp_path / "tfds")
    assert hosts == [cifar.DOWNLOAD_HOST] and time.perf_counter() - start < 10
