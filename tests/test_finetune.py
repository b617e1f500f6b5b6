"""Fine-tuning: a run started from a torch-keyed weight file with a head of another size drawn fresh, frozen layers
(parameters and BatchNorm statistics bit-identical, through training and export), the head's own learning rate,
bfloat16 compute; the trainer against torch's fine-tuning loop (requires_grad off, frozen part in eval())."""

import json

import jax
import numpy as np
import optax
import pytest
import torch

import jaxcnn
from parity.checks.trainer_steps import compare_trainer_epoch
from parity.originals import torch_models
from parity.originals.notebook_loops import RgbImages
from train import cifar10
from train.data import cifar10 as cifar10_data
from train.data.dataset import Dataset
from train.trainer import finetune, fit

FAST = ["--devices", "1", "--no-compile-cache", "--no-progress"]
CLASSES = tuple("abcde")


def _photos(n=40, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n + 10, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, len(CLASSES), n + 10).astype(np.int32)
    return Dataset("photos", images[:n], labels[:n], images[n:], labels[n:], classes=CLASSES)


@pytest.fixture(scope="module")
def start_file(tmp_path_factory):
    """A 10-class cnn_bn_dropout for 32x32x3 whose BatchNorm statistics have moved, as torch-keyed safetensors."""
    torch.manual_seed(1)
    module = torch_models.create("cnn_bn_dropout", input_size=32, dropout=0.0)
    with torch.no_grad():
        for _ in range(3):
            module.train()(torch.rand(8, 3, 32, 32))
    path = tmp_path_factory.mktemp("weights") / "start.safetensors"
    jaxcnn.write_torch_safetensors({k: v.numpy() for k, v in module.state_dict().items()}, path)
    return path


def _settings(start_file, **kwargs):
    return fit.Settings(model="cnn_bn_dropout", dataset="photos", batch_size=8, lr=1e-3, optimizer="adam",
                        preprocess="normalize", weights=str(start_file), **kwargs)


def test_start_from_loads_everything_but_a_resized_head(start_file):
    model, _ = fit.build_model("cnn_bn_dropout", "torch", (32, 32, 3), 5)
    fresh = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    variables, notes = finetune.start_from(model, fresh, start_file)
    assert notes == ["new head fc.3: 5 outputs drawn fresh (the file's is (10, 128))"]
    given, loaded = jaxcnn.read_torch_safetensors(start_file), jaxcnn.torch_state_dict(model, variables)
    for key in loaded:
        if key.startswith("fc.3."):
            np.testing.assert_array_equal(loaded[key], jaxcnn.torch_state_dict(model, fresh)[key])
        elif not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(loaded[key], given[key])
    other, _ = fit.build_model("mnist_cnn", "torch", (32, 32, 3), 5)
    with pytest.raises(jaxcnn.ConversionError, match="conv_stack"):
        finetune.start_from(other, other.init(jax.random.key(0), np.zeros((1, 32, 32, 3))), start_file)


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_freeze_prefixes_are_checked(api):
    """Both APIs take torch's names and label their own trees: linen's modules 'conv_0', NNX's paths conv/0."""
    model, _ = fit.build_model("cnn_bn_dropout", "torch", (32, 32, 3), 5, api=api)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3))))["params"]
    labels = finetune.parameter_groups(model, params, ("conv",), head_lr=True)
    layers = {}
    for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
        layers.setdefault(jax.tree_util.keystr(path[:-1], simple=True, separator="."), set()).add(label)
    torch_names = {"conv.0": {"frozen"}, "conv.1": {"frozen"}, "conv.3": {"frozen"}, "conv.4": {"frozen"},
                   "fc.0": {"train"}, "fc.3": {"head"}}
    assert layers == {name if api == "nnx" else name.replace(".", "_"): v for name, v in torch_names.items()}
    frozen = finetune.frozen_modules(finetune.parameter_groups(model, params, ("conv.0", "conv.1")))
    assert frozen == ({("conv", 0), ("conv", 1)} if api == "nnx" else {("conv_0",), ("conv_1",)})
    with pytest.raises(ValueError, match="--freeze features: no parameter is under it; the model's layers: conv"):
        finetune.parameter_groups(model, params, ("features",))
    with pytest.raises(ValueError, match="would freeze the head fc.3"):
        finetune.parameter_groups(model, params, ("fc",))


@pytest.mark.parametrize("double", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_finetuning_equals_torchs_and_leaves_the_frozen_layers_bit_identical(start_file, double):
    """Head replaced, `conv` (two convolutions and their BatchNorms) frozen, the head at 10x the learning rate:
    the trainer's epoch and torch's (requires_grad off, conv in eval()) from the same start."""
    photos = _photos()
    report = compare_trainer_epoch(_settings(start_file, freeze=("conv",), lr_head=1e-2), photos,
                                   lambda dtype: RgbImages(photos.train_images, photos.train_labels, dtype=dtype),
                                   double=double, dropout=0.0)
    if double:
        assert max(report.relative.values()) <= 1e-9, report.relative
    else:
        assert report.loss_verdict(1e-4).ok, report.losses
    model, _ = fit.build_model("cnn_bn_dropout", "torch", (32, 32, 3), 5)
    after, given = jaxcnn.torch_state_dict(model, report.variables), jaxcnn.read_torch_safetensors(start_file)
    for key in after:
        if key.startswith("conv.") and not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(after[key], given[key].astype(after[key].dtype))  # bit for bit
    assert not np.array_equal(after["fc.0.weight"], given["fc.0.weight"])  # the rest trained


def test_the_head_takes_its_own_learning_rate():
    params = {"body": np.ones(3, np.float32), "head": np.ones(2, np.float32)}
    labels = {"body": finetune.TRAIN, "head": finetune.HEAD}
    tx = finetune.grouped(optax.sgd(0.1), labels, head=optax.sgd(1.0))
    updates, _ = tx.update({"body": np.ones(3), "head": np.ones(2)}, tx.init(params), params)
    assert np.allclose(updates["body"], -0.1) and np.allclose(updates["head"], -1.0)


def _learnable(n, seed):
    """CIFAR-shaped images whose class is where a bright square sits (a task a small network learns in an epoch)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 100, (n, 32, 32, 3), dtype=np.uint8)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 5)
        image[4 + 14 * row: 14 + 14 * row, 1 + 6 * col: 6 + 6 * col] = 250
    return images, labels


def test_the_cifar_command_fine_tunes_in_bfloat16_to_the_float32_accuracy(tmp_path, capsys):
    folder = tmp_path / cifar10_data.FOLDER
    folder.mkdir()
    images, labels = _learnable(600, 0)
    for i, part in enumerate(np.array_split(np.arange(500), 5)):
        cifar10_data.write_binary(folder, images[part], labels[part], f"data_batch_{i + 1}.bin")
    cifar10_data.write_binary(folder, images[500:], labels[500:], "test_batch.bin")
    start = tmp_path / "start.safetensors"
    model = jaxcnn.create_model("cifar_conv_mlp")
    jaxcnn.write_torch_safetensors(jaxcnn.torch_state_dict(
        model, model.init(jax.random.key(3), np.zeros((1, 32, 32, 3), np.float32))), start)
    runs = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        assert cifar10.main(["--data-dir", str(folder), "--out", str(out), "--weights", str(start), "--freeze", "0",
                             "--dtype", dtype, "--epochs", "3", "--batch-size", "25", "--augment", "none",
                             "--schedule", "constant", "--export-torch", str(out / "w.safetensors"), *FAST]) == 0
        runs[dtype] = json.loads((out / "metrics.json").read_text())["final"]["test_accuracy"]
        exported, given = jaxcnn.read_torch_safetensors(out / "w.safetensors"), jaxcnn.read_torch_safetensors(start)
        for key in ("0.weight", "0.bias"):
            np.testing.assert_array_equal(exported[key], given[key])
        assert not np.array_equal(exported["3.weight"], given["3.weight"])
    assert "started from" in capsys.readouterr().out
    assert runs["float32"] >= 0.9 and abs(runs["bfloat16"] - runs["float32"]) <= 0.05, runs
