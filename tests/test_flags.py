"""train.mnist's flags are checked before anything runs; a diverging run stops with a non-zero exit."""

import errno
import pathlib
import time

import jax
import numpy as np
import pytest

from tests.conftest import MNIST_DIR
from train import mnist
from train.data import mnist as mnist_reader, tfds_builder
from train.data.dataset import DataError
from train.trainer import fit
from train.trainer.fit import TrainingError
from train.trainer.run import Config, train_and_evaluate


@pytest.mark.parametrize("flags, words", [
    (["--train-subset", "-100"], "--train-subset: must be >= 1, got -100"),
    (["--test-subset", "0"], "--test-subset: must be >= 1, got 0"),
    (["--devices", "0"], "--devices: must be >= 1"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--batch-size", "-3"], "--batch-size: must be >= 1"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--weight-decay", "-0.001"], "--weight-decay: must be >= 0"),
    (["--warmup-fraction", "1"], "--warmup-fraction: must be in (0, 1)"),
    (["--label-smoothing", "1.5"], "--label-smoothing: must be in [0, 1)"),
    (["--num-processes", "0"], "--num-processes: must be >= 1"),
    (["--process-id", "-1"], "--process-id: must be >= 0"),
    (["--optimizer", "adam_l2"], "give --weight-decay > 0"),
])
def test_a_flag_out_of_range_is_refused_naming_it(flags, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        mnist.parse_command_line(flags)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_flags_in_range_pass():
    args = mnist.parse_command_line(["--train-subset", "100", "--lr", "0.01", "--optimizer", "adam_l2",
                                     "--weight-decay", "1e-3", "--label-smoothing", "0", "--process-id", "0"])
    assert (args.train_subset, args.lr, args.weight_decay, args.label_smoothing) == (100, 0.01, 1e-3, 0.0)


def test_more_devices_than_exist_is_an_error_before_anything_runs(tmp_path):
    wanted = len(jax.devices()) + 1
    with pytest.raises(TrainingError, match=f"--devices {wanted}: only {wanted - 1} "):
        train_and_evaluate(Config(devices=wanted, out=str(tmp_path / "run"), data_dir=str(tmp_path / "none")))
    assert not (tmp_path / "run").exists()


def test_a_finite_but_exploding_or_infinite_loss_stops_the_run():
    assert fit._first_bad(np.array([2.3, 1.0, 9e30, np.nan])) == 2
    assert fit._first_bad(np.array([2.3, -np.inf])) == 1
    assert fit._first_bad(np.array([2.3, 1e5])) is None
    for loss in (9e30, float("inf"), float("nan")):
        with pytest.raises(TrainingError, match="after epoch 3"):
            fit.check_test_loss(loss, 3)
    fit.check_test_loss(0.05, 3)


@pytest.mark.slow
@pytest.mark.mnist
def test_the_command_exits_non_zero_on_a_diverging_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fit, "EXPLODING_LOSS", 1e-9)  # every loss "explodes": the first step stops the run
    code = mnist.main(["--data-dir", str(MNIST_DIR), "--out", str(tmp_path / "r"), "--train-subset", "200",
                       "--test-subset", "100", "--epochs", "1", "--devices", "1", "--no-compile-cache", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "at step 1 of epoch 1" in err and "above 1e-09" in err and "no checkpoint was written" in err


def test_offline_without_data_dir_fails_at_once_naming_the_flag(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets", reason="the TFDS route needs tensorflow-datasets (the tfds extra)")
    monkeypatch.delenv(mnist_reader.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(tfds_builder, "reachable", lambda host, *args, **kwargs: False)  # as on a machine without network
    start = time.monotonic()
    with pytest.raises(DataError, match=r"storage.googleapis.com unreachable.*pass --data-dir DIR"):
        mnist_reader.load("mnist", None, tmp_path / "tfds")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys, code, text):
    def fails(self, *args, **kwargs):
        raise OSError(code, text, str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", fails)
    argv = ["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--no-compile-cache"]
    assert mnist.main(argv) == 1
    assert capsys.readouterr().err == f"error: {text}: {tmp_path / 'run'}\n"
    with pytest.raises(OSError, match=text):
        mnist.main(argv + ["--debug"])
