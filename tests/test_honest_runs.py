"""A run never mixes its checkpoints with another's (an --out that holds some is refused unless --resume or
--overwrite; a checkpoint orbax skips is an error); resume verifies checksums, passes over a damaged checkpoint
naming it, and refuses changed settings naming both values."""

import dataclasses

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest
import torch

from parity.__main__ import main
from tests.conftest import MNIST_DIR
from train.trainer import resume
from train.trainer.checkpoint import CheckpointError, Checkpoints
from train.trainer.fit import TrainingError
from train.trainer.run import Config, train_and_evaluate


def _config(tmp_path, **kwargs) -> Config:
    base = dict(model="lenet5_mnist", data_dir=str(MNIST_DIR), out=str(tmp_path / "run"), train_subset=500,
                test_subset=100, devices=1, epochs=1, progress=False, compile_cache=None)
    return Config(**(base | kwargs))


def _earlier_run(out, seed=0) -> None:
    """A checkpoint of epoch 1 under out, as a run with `seed` would leave it (a tiny state: no training)."""
    checkpoints = Checkpoints(out)
    checkpoints.save(1, {"w": jnp.zeros(3)}, {"epochs": [], "config": {"seed": seed}})
    checkpoints.close()


@pytest.mark.mnist
def test_an_out_holding_checkpoints_is_refused_unless_resume_or_overwrite(tmp_path):
    _earlier_run(tmp_path / "run", seed=0)
    with pytest.raises(TrainingError, match=r"holds an earlier run's checkpoints \(epochs 1\): give --resume .* "
                                            r"--overwrite"):
        train_and_evaluate(_config(tmp_path, seed=1))
    assert Checkpoints(tmp_path / "run").meta(1)["config"]["seed"] == 0  # untouched
    train_and_evaluate(_config(tmp_path, seed=1, overwrite=True))
    assert Checkpoints(tmp_path / "run").meta(1)["config"]["seed"] == 1  # the checkpoint is this run's


def test_a_skipped_checkpoint_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ocp.CheckpointManager, "save", lambda self, *args, **kwargs: False)
    with pytest.raises(CheckpointError, match="the checkpoint of epoch 1 was not written"):
        Checkpoints(tmp_path).save(1, {"w": jnp.zeros(3)}, {})


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "run").write_text("mine")
    with pytest.raises(TrainingError, match="is a file"):
        train_and_evaluate(_config(tmp_path))
    assert (tmp_path / "run").read_text() == "mine"


def _damage(epoch_dir, how: str) -> None:
    files = sorted((p for p in (epoch_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest = files[-1]
    if how == "missing":
        biggest.unlink()
    else:  # 64 flipped bytes in the middle of the largest array file
        data = bytearray(biggest.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        biggest.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["missing", "flipped"])
def test_a_damaged_file_is_named_before_orbax_reads_it(tmp_path, how):
    _earlier_run(tmp_path)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.verify_files(1)  # intact
    _damage(tmp_path / "checkpoints" / "1", how)
    with pytest.raises(CheckpointError, match="missing" if how == "missing" else "differs from the one saved"):
        checkpoints.restore(1, {"w": jnp.zeros(3)})


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("how", ["missing", "flipped"])
def test_resume_passes_over_a_damaged_checkpoint_naming_it(tmp_path, capsys, how):
    train_and_evaluate(_config(tmp_path, epochs=2))
    _damage(tmp_path / "run" / "checkpoints" / "2", how)
    capsys.readouterr()
    metrics = train_and_evaluate(_config(tmp_path, epochs=3, resume=True))
    err = capsys.readouterr().err
    assert "passed over damaged checkpoints" in err and str(tmp_path / "run" / "checkpoints" / "2") in err
    assert ("is missing" if how == "missing" else "differs from the one saved") in err  # found before orbax reads
    assert (tmp_path / "run" / "checkpoints" / "damaged-2").is_dir()  # kept aside, not deleted
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]  # epoch 1 resumed, 2 and 3 trained again


@pytest.mark.parametrize("flag, value", [("lr", 1e-2), ("weight_decay", 1e-4), ("init", "flax"), ("test_subset", 50),
                                         ("optimizer", "sgd")])
def test_resume_refuses_a_changed_setting_naming_both_values(tmp_path, flag, value):
    saved = dataclasses.asdict(_config(tmp_path, lr=1e-3))
    with pytest.raises(TrainingError, match=f"--{flag.replace('_', '-')} .* \\(saved\\) -> {value!r} \\(now\\)"):
        resume.check_settings(saved, _config(tmp_path, **({"lr": 1e-3, "resume": True} | {flag: value})))
    resume.check_settings(saved, _config(tmp_path, lr=1e-3, epochs=5, resume=True))  # more epochs: fine


@pytest.mark.slow
@pytest.mark.mnist
def test_resume_with_allow_changes_warns_and_trains(tmp_path, capsys):
    train_and_evaluate(_config(tmp_path, lr=1e-3))
    with pytest.raises(TrainingError, match=r"--lr 0.001 \(saved\) -> 0.002 \(now\)"):
        train_and_evaluate(_config(tmp_path, epochs=2, resume=True, lr=2e-3))
    metrics = train_and_evaluate(_config(tmp_path, epochs=2, resume=True, lr=2e-3, allow_changes=True))
    assert "resuming with changed settings: --lr 0.001 (saved) -> 0.002 (now)" in capsys.readouterr().err
    assert len(metrics["epochs"]) == 2


@pytest.mark.slow
@pytest.mark.mnist
def test_parity_convert_takes_a_run_folder(tmp_path, capsys):
    train_and_evaluate(_config(tmp_path, export_torch=str(tmp_path / "exported.pt")))
    run = str(tmp_path / "run")
    assert main(["convert", "--model", "lenet5_mnist", run, str(tmp_path / "converted.pt")]) == 0
    assert "train.mnist run (epoch 1) -> torch" in capsys.readouterr().out
    exported, converted = (torch.load(tmp_path / f, weights_only=True) for f in ("exported.pt", "converted.pt"))
    assert list(converted) == list(exported) and all(torch.equal(converted[k], exported[k]) for k in exported)
    assert main(["convert", "--model", "mnist_cnn", run, str(tmp_path / "other.pt")]) == 2
    assert "was trained with --model lenet5_mnist" in capsys.readouterr().err
