"""TFDS's image-classification builders read whole into a `Dataset`, refusing at once where there is no network."""

import socket
from pathlib import Path

import numpy as np

from train.data.dataset import DataError, Dataset


def load_tfds_builder(dataset: str, data_dir: str | Path | None, host: str, offline_hint: str,
                      manual_files=(), manual_dir: str | Path | None = None) -> Dataset:
    """Any TFDS image-classification builder with 'image' and 'label' features, prepared (downloaded from `host`
    where needed) and read whole into a Dataset with the builder's class names.

    Raises DataError naming `offline_hint` at once (not after minutes of retries) when the builder has no copy,
    its `manual_files` are not in the manual folder and `host` cannot be reached.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(dataset, data_dir=str(data_dir) if data_dir else None)
    manual = Path(manual_dir) if manual_dir else Path(builder.data_dir).parents[1] / "downloads" / "manual"
    has_manual = bool(manual_files) and all((manual / f).is_file() for f in manual_files)
    if not builder.is_prepared() and not has_manual and not reachable(host):
        where = f", or put them in {manual}" if manual_files else ""
        raise DataError(f"no network to download {dataset} from ({host} unreachable) and TFDS has no copy: "
                        f"{offline_hint}{where}")
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=config)
    splits = {}
    for split in ("train", "test"):  # in batches: batch_size=-1 needs a known size, which mock data lacks
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=10_000)))
        splits[split] = {key: np.concatenate([b[key] for b in batches]) for key in ("image", "label")}
    return Dataset(dataset, splits["train"]["image"].astype(np.uint8), splits["train"]["label"].astype(np.int32),
                   splits["test"]["image"].astype(np.uint8), splits["test"]["label"].astype(np.int32),
                   classes=tuple(builder.info.features["label"].names))


def reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (TFDS would otherwise retry for minutes)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def tensorflow_available() -> bool:
    try:
        import tensorflow  # noqa: F401
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        return False
    return True
