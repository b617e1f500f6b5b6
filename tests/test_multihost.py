"""Two processes on localhost (CPU collectives), each feeding its half of every global batch, end where one
process ends."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from PIL import Image

from tests.conftest import MNIST_DIR
from tests.test_train_folder import CLASSES, _params
from tests.test_train import restore_on_one_device

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.mnist]


def _args(out: Path) -> list[str]:
    return [sys.executable, "-m", "train.mnist", "--data-dir", str(MNIST_DIR), "--out", str(out), "--epochs", "1",
            "--train-subset", "1000", "--test-subset", "200", "--optimizer", "sgd", "--lr", "0.01", "--no-progress"]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return env | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(out: Path, logs: Path, attempts: int = 3, timeout: float = 300, args=_args) -> list[str]:
    """Runs the two-process training (the command `args(out)`); returns each process's stdout. A process that fails stops its partner
    at once (it would wait for it until the timeout). The probed port may be taken by someone else before the
    coordinator binds it: then it tries again on another."""
    for attempt in range(attempts):
        port = _free_port()
        files = [(logs / f"{attempt}-{i}.out", logs / f"{attempt}-{i}.err") for i in range(2)]
        handles = [(stdout.open("w"), stderr.open("w")) for stdout, stderr in files]
        procs = [subprocess.Popen(args(out) + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                                "--process-id", str(i)], env=_env(1), cwd=REPO,
                                  stdout=stdout, stderr=stderr, text=True)
                 for i, (stdout, stderr) in enumerate(handles)]
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                break
            time.sleep(0.2)
        for p, (stdout, stderr) in zip(procs, handles):
            p.wait()
            stdout.close()
            stderr.close()
        errors = [stderr.read_text() for _, stderr in files]
        if all(p.returncode == 0 for p in procs):
            return [stdout.read_text() for stdout, _ in files]
        if not any("address already in use" in e.lower() for e in errors):
            raise AssertionError("\n".join(e[-3000:] for e in errors))
        shutil.rmtree(out, ignore_errors=True)
    raise AssertionError(f"no free coordinator port in {attempts} attempts")


def test_two_processes_equal_one_process(tmp_path):
    one = subprocess.run(_args(tmp_path / "one") + ["--devices", "2"], env=_env(2), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "logs").mkdir()
    outputs = _two_processes(tmp_path / "two", tmp_path / "logs")
    assert "on 2 cpu device(s)" in outputs[0]
    (a, _), (b, _) = (restore_on_one_device(tmp_path / d, 1, "lenet5_mnist", "sgd", 0.01) for d in ("one", "two"))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.max(np.abs(np.asarray(x, np.float64) - y)) <= 1e-5 * max(np.max(np.abs(x)), 1e-12)


def _folder_args(photos: Path):
    def args(out: Path) -> list[str]:
        return [sys.executable, "-m", "train.folder", "--data-dir", str(photos), "--out", str(out), "--model",
                "cifar_conv_mlp", "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--optimizer", "sgd",
                "--lr", "0.05", "--workers", "0", "--no-progress", "--no-compile-cache"]
    return args


def test_two_processes_each_streaming_its_shard_of_a_folder_equal_one_process(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 4)):
        for c, name in enumerate(CLASSES):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                    tmp_path / "photos" / split / name / f"{i}.png")
    args = _folder_args(tmp_path / "photos")
    one = subprocess.run(args(tmp_path / "one") + ["--devices", "2"], env=_env(2), cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "logs").mkdir()
    outputs = _two_processes(tmp_path / "two", tmp_path / "logs", args=args)
    assert "on 2 cpu device(s)" in outputs[0]
    for x, y in zip(_params(tmp_path / "one"), _params(tmp_path / "two")):
        assert np.max(np.abs(np.asarray(x, np.float64) - y)) <= 1e-5 * max(np.max(np.abs(x)), 1e-12)
