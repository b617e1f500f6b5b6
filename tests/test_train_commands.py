"""python -m train.sun and python -m train.cifar10: the one trainer on notebook 003's folder and on CIFAR-10's binary
files (generated here in exactly those formats, small), with everything train.mnist has: epoch lines, metrics.json,
curves.png, checkpoints, exact resume, --export-torch, one-line failures, and train.inspect on the runs."""

import json

import jax
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import jaxcnn
from parity.originals import torch_models
from train import cifar10, inspect, sun
from train.data import cifar10 as cifar10_data, sun as sun_data, tfds_builder
from train.trainer.checkpoint import saved_epochs

FAST = ["--devices", "1", "--no-compile-cache", "--no-progress"]


@pytest.fixture(scope="module")
def sun_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sun") / "data"
    assert sun.main(["make-data", "--out", str(out), "--train", "64", "--test", "16", "--size", "32"]) == 0
    return out


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """The extracted cifar-10-batches-bin/ of a generated data set (no archive: its checksum is the real one's)."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("cifar") / cifar10_data.FOLDER
    folder.mkdir()
    train_images, train_labels = rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 80)
    for i, part in enumerate(np.array_split(np.arange(80), 5)):
        cifar10_data.write_binary(folder, train_images[part], train_labels[part], f"data_batch_{i + 1}.bin")
    cifar10_data.write_binary(folder, rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 20),
                              "test_batch.bin")
    return folder


def test_sun_trains_with_the_notebooks_recipe_and_prints_its_figures(sun_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = sun.main(["--data-dir", str(sun_dir), "--out", str(out), "--epochs", "2", "--batch-size", "16",
                     "--export-torch", str(tmp_path / "sun.safetensors"), *FAST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "epoch 1/2: loss_mean " in printed and ", test MSE (Q) " in printed and "accuracy" not in printed
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["model"], config["optimizer"], config["lr"], config["weight_decay"], config["preprocess"]) == (
        "sun_regressor", "adam_l2", 1e-3, 1e-3, "unit")  # notebook 003's recipe
    assert config["model_kwargs"] == {"input_size": 32} and config["classes"] is None
    assert metrics["final"]["test_mse"] == metrics["epochs"][-1]["test_loss"] > 0
    assert "test_accuracy" not in metrics["final"] and (out / "curves.png").stat().st_size > 0

    # The export is the trained network: torch's notebook-003 Sequential, built for 32x32, computes the test MSE.
    module = torch_models.create("sun_regressor", input_size=32)
    module.load_state_dict(load_file(tmp_path / "sun.safetensors"), strict=True)
    dataset = sun_data.load(sun_dir)
    with torch.no_grad():
        x = torch.from_numpy(dataset.test_images).permute(0, 3, 1, 2).float() / 255.0
        mse = torch.nn.functional.mse_loss(module(x), torch.from_numpy(dataset.test_labels)).item()
    assert mse == pytest.approx(metrics["final"]["test_mse"], rel=1e-4)


@pytest.mark.slow  # resume through the trainer: test_train_folder.py
def test_cifar10_trains_resumes_exactly_and_exports(cifar_dir, tmp_path, capsys):
    common = ["--data-dir", str(cifar_dir), "--batch-size", "16", "--schedule", "constant", *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cifar10.main([*common, "--out", str(straight), "--epochs", "2"]) == 0
    assert cifar10.main([*common, "--out", str(resumed), "--epochs", "1"]) == 0
    assert cifar10.main([*common, "--out", str(resumed), "--epochs", "2", "--resume",
                         "--export-torch", str(tmp_path / "cifar.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2: train loss " in printed and "test accuracy" in printed
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, resumed)]
    assert metrics[0]["config"]["augment"] == "crop_flip"  # recipe cifar10_conv_mlp: torchvision's augmentation
    assert metrics[0]["config"]["classes"][:3] == ["airplane", "automobile", "bird"]
    assert [e["train_loss"] for e in metrics[0]["epochs"]] == [e["train_loss"] for e in metrics[1]["epochs"]]
    states = [_params(d) for d in (straight, resumed)]
    for a, b in zip(*states):
        np.testing.assert_array_equal(a, b)
    model = jaxcnn.create_model("cifar_conv_mlp")
    exported = jaxcnn.load_torch_weights(model, tmp_path / "cifar.safetensors")
    for a, b in zip(jax.tree_util.tree_leaves(exported["params"]), states[1]):
        np.testing.assert_array_equal(a, b)


def _params(out):
    trained = inspect.load_trained(out)
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(trained.variables["params"])]


@pytest.mark.parametrize("argv, words", [
    (["--model", "cnn_basic"], "model 'cnn_basic' is a classifier (cross-entropy); notebook 003's sun data has "
                               "regression targets"),
    (["--model", "conv_relu_conv"], "outputs a feature map"),
])
def test_sun_refuses_a_model_that_cannot_train_on_it(sun_dir, tmp_path, capsys, argv, words):
    assert sun.main(["--data-dir", str(sun_dir), "--out", str(tmp_path / "r"), *argv, *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_cifar10_refuses_a_regressor_and_an_image_size_too_small(cifar_dir, sun_dir, tmp_path, capsys):
    assert cifar10.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "r"), "--model", "sun_regressor",
                         *FAST]) == 1
    assert "is a regressor (MSE loss); CIFAR-10 has class labels" in capsys.readouterr().err
    tiny = tmp_path / "tiny"  # notebook 003's layout with 4x4 images: three 2x2 max pools leave nothing
    for split in ("train", "test"):
        (tiny / split).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((4, 4, 3), 60 * i, np.uint8)).save(tiny / split / f"{i}.png")
        (tiny / split / "format.json").write_text(json.dumps({f"{i}.png": [1.5, 2.0] for i in range(4)}))
    assert sun.main(["--data-dir", str(tiny), "--out", str(tmp_path / "t"), *FAST]) == 1
    assert "model 'sun_regressor' does not take notebook 003's sun data's 4x4x3 images" in capsys.readouterr().err


@pytest.mark.slow  # the tools are fast-tested on MNIST runs
def test_inspect_draws_the_filters_of_a_sun_and_a_cifar_run(sun_dir, cifar_dir, tmp_path, capsys):
    for main, data_dir, name in ((sun.main, sun_dir, "sun"), (cifar10.main, cifar_dir, "cifar")):
        out = tmp_path / name
        assert main(["--data-dir", str(data_dir), "--out", str(out), "--epochs", "1", "--batch-size", "16",
                     *FAST]) == 0
        assert inspect.main(["--checkpoint", str(out), "--out", str(out / "inspect"), "--class-steps", "2",
                             "--occlusion-stride", "8", "--neighbours", "2"]) == 0
        drawn = {p.name for p in (out / "inspect").iterdir()}
        assert {"filters.png", "activations.png", "neighbours.png", "index.md"} <= drawn
        assert ("class_models.png" in drawn) == (name == "cifar")  # the class tools need a classifier
    index = (tmp_path / "sun" / "inspect" / "index.md").read_text()
    assert "(target (" in index and "Not drawn: occlusion" in index
    assert saved_epochs(tmp_path / "cifar") == [1]


@pytest.mark.slow  # the reader: tests/test_cifar10_data.py
def test_cifar10_without_data_dir_takes_the_tfds_route(tmp_path, monkeypatch, capsys):
    """As flax's examples test theirs: TFDS's cifar10 builder on mock data, no files, no network."""
    import tensorflow_datasets as tfds


    monkeypatch.setattr(tfds_builder, "reachable", lambda host, *args, **kwargs: True)  # mock_data stands in for it
    with tfds.testing.mock_data(num_examples=64):
        code = cifar10.main(["--out", str(tmp_path / "run"), "--tfds-dir", str(tmp_path / "tfds"), "--epochs", "1",
                             "--batch-size", "16", *FAST])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["classes"] == list(cifar10_data.CLASSES) and 0 <= metrics["final"]["test_accuracy"] <= 1
