"""Test set-up: 8 fake CPU devices for data-parallel tests, set before JAX initialises."""

import gc
import os

os.environ["XLA_FLAGS"] = " ".join(
    f for f in (os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8") if f)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from parity.checks import suite
from train.data import mnist
from train.data.dataset import Dataset

# The real MNIST files: $JAXCNN_DATA_DIR, else ../shared/data/mnist beside the repository (never copied into it).
MNIST_DIR = Path(os.environ.get(mnist.DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
MNIST_MISSING = (f"the four MNIST IDX .gz files are not in {MNIST_DIR}: set ${mnist.DATA_DIR_ENV} to their folder "
                 "(tests marked `mnist` need them)")


def mnist_available() -> bool:
    return all((MNIST_DIR / name).is_file() for name in mnist.FILES.values())


def pytest_collection_modifyitems(config, items):
    """Tests marked `mnist` are skipped, with the reason, where the real files are absent."""
    if mnist_available():
        return
    for item in items:
        if "mnist" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=MNIST_MISSING))


@pytest.fixture(scope="session")
def mnist_data() -> Dataset:
    if not mnist_available():
        pytest.skip(MNIST_MISSING)
    return mnist.load_idx(MNIST_DIR)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


LARGE = ("vgg", "alexnet")


@pytest.fixture(autouse=True)
def _release_large_networks(request):
    """After a test of a large network (VGG's 130M parameters), what the worker keeps of it goes: the cached torch
    originals, JAX's compiled programs, unreachable objects. Two workers holding several VGGs each outgrow 24 GiB."""
    yield
    if any(name in request.node.name for name in LARGE):
        suite._built_original.cache_clear()
        jax.clear_caches()
        gc.collect()
