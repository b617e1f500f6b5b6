"""The whole job, as flax's examples test theirs: train.mnist's train_and_evaluate on TFDS mock data (no files,
no network), then the exported weights read back by jaxcnn alone."""

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxcnn
from jaxcnn.preprocess import PREPROCESS
from train.data import mnist, tfds_builder
from train.trainer.run import Config, train_and_evaluate


@pytest.fixture
def mock_mnist(monkeypatch):
    monkeypatch.delenv(mnist.DATA_DIR_ENV, raising=False)  # the TFDS route, as on a machine without the files
    monkeypatch.setattr(tfds_builder, "reachable", lambda host, *args, **kwargs: True)  # mock_data stands in for the download
    with tfds.testing.mock_data(num_examples=256):
        yield mnist.load("mnist")


def test_train_and_evaluate_on_mock_data(tmp_path, mock_mnist):
    config = Config(model="lenet5_mnist", epochs=2, batch_size=32, out=str(tmp_path / "run"),
                    tfds_dir=str(tmp_path / "tfds"), devices=1, progress=False,
                    export_torch=str(tmp_path / "lenet.safetensors"))
    metrics = train_and_evaluate(config)  # inside mock_mnist's mock_data
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]  # 8 steps an epoch on 256 images: it learns them
    assert all(np.isfinite(e["test_loss"]) and 0 <= e["test_accuracy"] <= 1 for e in epochs)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["final"] == metrics["final"] and saved["config"]["model_kwargs"] == {}
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["1", "2"]

    # The export is the trained model: jaxcnn reads it back (no torch) to the same test accuracy.
    model = jaxcnn.create_model("lenet5_mnist")
    variables = jaxcnn.load_torch_weights(model, tmp_path / "lenet.safetensors")
    logits = model.apply(variables, PREPROCESS["raw"](mock_mnist.test_images))
    accuracy = float(np.mean(np.asarray(jax.numpy.argmax(logits, -1)) == mock_mnist.test_labels))
    assert accuracy == pytest.approx(metrics["final"]["test_accuracy"])
