"""A run never mixes its checkpoints with another's: an --out that holds some is refused unless --resume or
--overwrite, and a checkpoint orbax skips is an error."""

import orbax.checkpoint as ocp
import pytest

from tests.conftest import MNIST_DIR
from train.checkpoint import Checkpoints
from train.fit import TrainingError
from train.run import Config, train_and_evaluate


def _config(tmp_path, **kwargs) -> Config:
    base = dict(model="lenet5_mnist", data_dir=str(MNIST_DIR), out=str(tmp_path / "run"), train_subset=500,
                test_subset=100, devices=1, epochs=1, progress=False, compile_cache=None)
    return Config(**(base | kwargs))


@pytest.mark.mnist
def test_an_out_holding_checkpoints_is_refused_unless_resume_or_overwrite(tmp_path):
    train_and_evaluate(_config(tmp_path, seed=0))
    with pytest.raises(TrainingError, match=r"holds an earlier run's checkpoints \(epochs 1\): give --resume .* "
                                            r"--overwrite"):
        train_and_evaluate(_config(tmp_path, seed=1))
    assert Checkpoints(tmp_path / "run").meta(1)["config"]["seed"] == 0  # untouched
    train_and_evaluate(_config(tmp_path, seed=1, overwrite=True))
    assert Checkpoints(tmp_path / "run").meta(1)["config"]["seed"] == 1  # the checkpoint is this run's


@pytest.mark.mnist
def test_a_skipped_checkpoint_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ocp.CheckpointManager, "save", lambda self, *args, **kwargs: False)
    with pytest.raises(TrainingError, match="the checkpoint of epoch 1 was not written"):
        train_and_evaluate(_config(tmp_path))


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "run").write_text("mine")
    with pytest.raises(TrainingError, match="is a file"):
        train_and_evaluate(_config(tmp_path))
    assert (tmp_path / "run").read_text() == "mine"
