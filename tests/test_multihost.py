"""Two processes on localhost (CPU collectives), each feeding its half of every global batch, end where one
process ends."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from tests.test_train import MNIST_DIR, restore_on_one_device

REPO = Path(__file__).resolve().parents[1]


def _args(out: Path) -> list[str]:
    return [sys.executable, "-m", "train.mnist", "--data-dir", str(MNIST_DIR), "--out", str(out), "--epochs", "1",
            "--train-subset", "1000", "--test-subset", "200", "--optimizer", "sgd", "--lr", "0.01", "--no-progress"]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return env | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def test_two_processes_equal_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one = subprocess.run(_args(tmp_path / "one") + ["--devices", "2"], env=_env(2), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    procs = [subprocess.Popen(_args(tmp_path / "two") + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                                          "--process-id", str(i)],
                              env=_env(1), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "on 2 cpu device(s)" in outputs[0][0]
    (a, _), (b, _) = (restore_on_one_device(tmp_path / d, 1, "lenet5_mnist", "sgd", 0.01) for d in ("one", "two"))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.max(np.abs(np.asarray(x, np.float64) - y)) <= 1e-5 * max(np.max(np.abs(x)), 1e-12)
