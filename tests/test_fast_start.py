"""A fast start: the state is initialised by one compiled program, each program compiles once, and a second
identical `python -m train.mnist` loads every program from the persistent compilation cache."""

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxcnn
from tests.conftest import MNIST_DIR
from train.trainer import startup
from train.trainer.data_parallel import Trainer
from train.trainer.optimizers import create_optimizer
from train.trainer.step import seeded_state

REPO = Path(__file__).resolve().parents[1]
FINISHED = re.compile(r"Finished XLA compilation of (\S+)")
HIT = re.compile(r"Persistent compilation cache hit for '([^']+)'")


@pytest.mark.parametrize("name,parallel", [("lenet5_mnist", "sharding"),
                                           pytest.param("cnn_bn_dropout", "pmap", marks=pytest.mark.slow)])
def test_compiled_init_draws_what_the_eager_init_draws(name, parallel):
    model, tx = jaxcnn.create_model(name), create_optimizer("adam", 1e-3, 0.0)
    trainer = Trainer(model, tx, "normalize", parallel, devices=jax.devices()[:2])
    state, dropout_key = trainer.unreplicate(trainer.init_state(7))
    eager_state, eager_key = seeded_state(model, tx, 7)
    np.testing.assert_array_equal(dropout_key, eager_key)
    for ours, eager in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(eager_state)):
        np.testing.assert_allclose(ours, eager, rtol=1e-6, atol=0)
    other, _ = trainer.unreplicate(trainer.init_state(8))
    kernels = [(a, b) for a, b in zip(jax.tree_util.tree_leaves(other.params), jax.tree_util.tree_leaves(state.params))
               if a.ndim >= 2]
    assert kernels and not any(np.allclose(a, b) for a, b in kernels)  # another seed, other weights


def test_default_cache_dir_follows_jax_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert startup.default_cache_dir() == tmp_path / "jax"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    assert startup.default_cache_dir() == tmp_path / "xdg" / "jaxcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert startup.default_cache_dir() == Path.home() / ".cache" / "jaxcnn"


def _train(tmp_path: Path, run: str, *flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")}
    env |= {"JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run([sys.executable, "-m", "train.mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                           "--train-subset", "1000", "--test-subset", "200", "--no-progress",
                           "--out", str(tmp_path / run), *flags], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.mark.slow
@pytest.mark.mnist
def test_second_identical_run_loads_every_program_from_the_cache(tmp_path):
    first = _train(tmp_path, "first")
    compiled = FINISHED.findall(first)
    assert 1 <= len(compiled) <= 10 and len(set(compiled)) == len(compiled), compiled  # each program once
    assert not HIT.findall(first)
    assert any((tmp_path / "xdg" / "jaxcnn").iterdir())  # $XDG_CACHE_HOME/jaxcnn by default
    second = _train(tmp_path, "second")
    assert sorted(HIT.findall(second)) == sorted(re.sub(r"jit\((\w+)\)", r"jit_\1", c) for c in compiled)


@pytest.mark.slow
@pytest.mark.mnist
def test_no_compile_cache_keeps_nothing(tmp_path):
    log = _train(tmp_path, "run", "--no-compile-cache")
    assert FINISHED.findall(log) and not HIT.findall(log)
    assert not (tmp_path / "xdg" / "jaxcnn").exists()
