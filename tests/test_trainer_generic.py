"""The trainer's pieces beyond MNIST: the Dataset contract, the models built for the data, the MSE loss and its
evaluation, augmentation as torchvision does it, recipes by data set, and the data sources' errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from train.data import augment, sources
from train.data.dataset import DataError, Dataset
from train.trainer import fit, recipes
from train.trainer.data_parallel import Trainer
from train.trainer.step import eval_chunk, example_losses, init_state


def _dataset(regression=False, n=32, shape=(8, 8, 3)):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = rng.uniform(0, 8, (n, 2)).astype(np.float32) if regression else rng.integers(0, 10, n).astype(np.int32)
    return Dataset("sun" if regression else "cifar10", images, labels, images[:8], labels[:8],
                        classes=None if regression else tuple("abcdefghij"))


def test_dataset_states_its_task_shape_and_outputs_and_refuses_inconsistent_splits():
    classes, targets = _dataset(), _dataset(regression=True)
    assert (classes.regression, classes.image_shape, classes.num_outputs) == (False, (8, 8, 3), 10)
    assert (targets.regression, targets.num_outputs) == (True, 2)
    assert targets.subset(4, 2).train_labels.shape == (4, 2) and targets.subset(4, 2).classes is None
    with pytest.raises(DataError, match=r"train images are \(8, 8, 3\) \(H, W, C\) but test images \(4, 4, 3\)"):
        Dataset("x", classes.train_images, classes.train_labels, classes.test_images[:, :4, :4],
                     classes.test_labels, classes.classes)
    with pytest.raises(DataError, match="must be uint8"):
        Dataset("x", classes.train_images.astype(np.float32), classes.train_labels, classes.test_images,
                     classes.test_labels, classes.classes)
    with pytest.raises(DataError, match="integer labels need class names"):
        Dataset("x", classes.train_images, classes.train_labels, classes.test_images, classes.test_labels)


def test_models_are_built_for_the_data():
    model, kwargs = fit.build_model("mnist_cnn", "torch", (32, 32, 3), 10, data_name="CIFAR-10")
    assert kwargs == {"in_channels": 3, "input_size": 32} and model.input_shape == (32, 32, 3)
    model, kwargs = fit.build_model("sun_regressor", "torch", (64, 48, 3), 2, regression=True)
    assert kwargs == {"input_size": (64, 48)} and model.input_shape == (64, 48, 3)
    with pytest.raises(fit.TrainingError, match="model 'alexnet' does not take CIFAR-10's 32x32x3 images"):
        fit.build_model("alexnet", "torch", (32, 32, 3), 10, data_name="CIFAR-10")


def test_mse_is_torchs_mse_loss_and_evaluates_to_the_split_mse():
    rng = np.random.default_rng(1)
    outputs, targets = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    expected = torch.nn.MSELoss()(torch.from_numpy(outputs), torch.from_numpy(targets)).item()
    assert float(example_losses("mse", jnp.asarray(outputs), jnp.asarray(targets)).mean()) == pytest.approx(expected)

    dataset = _dataset(regression=True, n=7)  # 7 examples: the evaluation pads its chunks and masks the padding
    model, _ = fit.build_model("sun_regressor", "torch", dataset.image_shape, 2, regression=True)
    trainer = Trainer(model, optax.sgd(0.1), "unit", loop="step", devices=jax.devices()[:1], loss="mse")
    state = trainer.replicate_state(init_state(model, optax.sgd(0.1), jax.random.key(0)))
    mse, accuracy = trainer.evaluate(state, *trainer.put_replicated((dataset.train_images, dataset.train_labels)))
    predictions = model.apply({"params": state.params}, dataset.train_images / 255.0)
    assert accuracy is None and mse == pytest.approx(float(jnp.mean((predictions - dataset.train_labels) ** 2)),
                                                     rel=1e-5)


def test_evaluation_chunks_fit_the_images():
    assert eval_chunk(10_000, (28, 28, 1)) == 1000 and eval_chunk(16, (28, 28, 1)) == 16
    assert eval_chunk(1000, (256, 256, 3)) == 85 and eval_chunk(5, (2048, 2048, 3)) == 1


def test_crop_flip_is_torchvisions_random_crop_with_padding_and_flip():
    images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.uint8).reshape(2, 6, 6, 1) + 1  # no zero pixels of its own
    seen = set()
    for seed in range(40):
        out = np.asarray(augment.augment_batch("crop_flip", images, jax.random.key(seed)))
        assert out.shape == images.shape and out.dtype == np.uint8
        for original, cut in zip(np.asarray(images), out):
            padded = np.pad(original, ((4, 4), (4, 4), (0, 0)))
            windows = {(i, j, f) for i in range(9) for j in range(9) for f in (0, 1)
                       if np.array_equal((padded[i:i + 6, j:j + 6] if not f else padded[i:i + 6, j:j + 6][:, ::-1]),
                                         cut)}
            assert windows, "not a window of the zero-padded image"
            seen |= windows
    assert len({(i, j) for i, j, _ in seen}) > 20 and {f for *_, f in seen} == {0, 1}
    flipped = np.asarray(augment.augment_batch("flip", images, jax.random.key(3)))
    assert all(np.array_equal(c, o) or np.array_equal(c, o[:, ::-1]) for c, o in zip(flipped, np.asarray(images)))
    assert augment.augment_batch("none", images, jax.random.key(0)) is images
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        augment.augment_batch("rotate", images, jax.random.key(0))


def test_recipes_follow_the_data_set():
    assert recipes.for_model("sun_regressor", "sun") == dict(preprocess="unit", optimizer="adam_l2", lr=1e-3,
                                                             weight_decay=1e-3, batch_size=32, epochs=5)
    assert recipes.for_model("sun_regressor", "mnist") == recipes.DEFAULT
    assert recipes.for_model("mnist_cnn", "cifar10") == recipes.DEFAULT
    settings = fit.Settings(model="sun_regressor", dataset="sun")
    assert (settings.optimizer, settings.weight_decay, settings.augment) == ("adam_l2", 1e-3, "none")
    with pytest.raises(ValueError, match="give --weight-decay > 0"):
        fit.Settings(model="sun_regressor", dataset="sun", weight_decay=0.0)


def test_sources_name_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="sun data is not published: pass --data-dir DIR"):
        sources.load("sun")
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; choose one of mnist, fashion_mnist, sun"):
        sources.load("imagenet")
    with pytest.raises(DataError, match="train/format.json"):
        sources.load("sun", tmp_path)


@pytest.mark.parametrize("parallel", ["sharding", pytest.param("pmap", marks=pytest.mark.slow)])
def test_a_regression_over_8_devices_equals_one_device(parallel):
    """Float targets (N, 2) on the devices, batches split over 8 of them: the one-device run's parameters."""
    dataset = _dataset(regression=True, n=64, shape=(16, 16, 3))
    results = []
    for devices, mode in ((jax.devices()[:1], "sharding"), (jax.devices(), parallel)):
        settings = fit.Settings(model="sun_regressor", dataset="sun", batch_size=16, epochs=1, optimizer="sgd",
                                lr=1e-4)
        run = fit.setup(settings, dataset, devices=devices, parallel=mode, loop="step", micro_batches=1)
        state, key = run.trainer.init_state(0)
        state, history = fit.fit(run, state, key, fit.place(run, dataset))
        results.append((run.trainer.unreplicate(state).params, history[0]))
    (single, one), (multi, eight) = results
    for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(multi)):
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    assert eight["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5) and "test_accuracy" not in eight
    assert eight["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
