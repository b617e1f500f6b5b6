"""train.mnist: data routes, data-parallel equivalence, checkpoints and resume, errors, export, trajectory."""

import functools
import gzip
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxcnn
from parity.bench import throughput
from parity.checks import trajectory
from parity.originals import torch_models
from tests.conftest import MNIST_DIR
from train import mnist
from train.bench import loop as loopbench
from train.data import mnist as mnist_reader
from train.data.dataset import DataError
from train.trainer import fit, recipes as train_recipes
from train.trainer.checkpoint import Checkpoints
from train.trainer.data_parallel import Trainer
from train.trainer.optimizers import create_optimizer, learning_rate, torch_adam, torch_sgd
from train.trainer.run import Config, train_and_evaluate
from train.trainer.step import CPU_MICRO_BATCHES, cross_entropy, epoch_order, init_state, runs_xla_convolutions

def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def tiny_idx(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 16)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), mnist_reader.IMAGES_MAGIC)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), mnist_reader.LABELS_MAGIC)
    return tmp_path


def test_real_mnist_files_load_and_verify(mnist_data):
    assert mnist_data.train_images.shape == (60000, 28, 28, 1) and mnist_data.train_images.dtype == np.uint8
    assert mnist_data.test_images.shape == (10000, 28, 28, 1)
    assert mnist_data.train_labels.shape == (60000,) and set(np.unique(mnist_data.train_labels)) == set(range(10))


def test_generated_idx_files_read_back(tiny_idx):
    ds = mnist_reader.load_idx(tiny_idx, verify=False)
    assert ds.train_images.shape == (64, 28, 28, 1) and ds.test_labels.shape == (16,)


def test_wrong_checksum_names_the_file(tiny_idx):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is corrupt or not the original file: sha256"):
        mnist_reader.load_idx(tiny_idx, "mnist")


def test_missing_and_broken_files_are_named(tiny_idx):
    (tiny_idx / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte.gz"):
        mnist_reader.load_idx(tiny_idx, verify=False)
    (tiny_idx / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
        mnist_reader.load_idx(tiny_idx, verify=False)
    write_idx(tiny_idx / "t10k-labels-idx1-ubyte.gz", np.zeros(16), mnist_reader.IMAGES_MAGIC)
    with pytest.raises(DataError, match=r"magic number 0x00000803 where 0x00000801 was expected"):
        mnist_reader.load_idx(tiny_idx, verify=False)


@pytest.mark.slow
@pytest.mark.skipif(not mnist_reader.tensorflow_available(), reason="the TFDS route needs tensorflow")
def test_tfds_route_gives_the_same_examples(tmp_path, mnist_data):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for name in mnist_reader.FILES.values():
        (manual / name).symlink_to(MNIST_DIR / name)
    via_tfds = mnist_reader.load_tfds("mnist", data_dir=tmp_path)
    for split in ("train", "test"):
        ours = getattr(mnist_data, f"{split}_images"), getattr(mnist_data, f"{split}_labels")
        theirs = getattr(via_tfds, f"{split}_images"), getattr(via_tfds, f"{split}_labels")
        as_set = lambda images, labels: sorted(zip(map(bytes, images.reshape(len(images), -1)), labels.tolist()))
        assert as_set(*ours) == as_set(*theirs)


def _run_steps(parallel, devices, steps=10, batch=32, model_name="mnist_cnn"):
    model = jaxcnn.create_model(model_name)
    # SGD: with Adam, the 8-way sum's different rounding order reaches 3e-5 in tiny-gradient entries, which
    # Adam's per-entry normalisation turns into O(lr) steps (see README, parity).
    tx = torch_sgd(0.05)
    trainer = Trainer(model, tx, "normalize", parallel, "step", devices=devices)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 28, 28, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, 512).astype(np.int32)
    state = trainer.replicate_state(init_state(model, tx, jax.random.PRNGKey(0)))
    key = trainer.put_replicated(jax.random.PRNGKey(1))
    imgs, labs = trainer.put_replicated((images, labels))
    state, losses = trainer.train_steps(state, imgs, labs, epoch_order(0, 1, 512, batch)[:steps], key)
    return trainer.unreplicate(state).params, trainer.host_losses(losses), trainer.evaluate(state, imgs, labs)


@pytest.mark.parametrize("parallel", ["sharding", pytest.param("pmap", marks=pytest.mark.slow)])
def test_data_parallel_over_8_devices_equals_one_device(parallel):
    assert len(jax.devices()) == 8
    single, single_losses, single_eval = _run_steps("sharding", jax.devices()[:1])
    multi, multi_losses, multi_eval = _run_steps(parallel, jax.devices())
    for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(multi)):
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    np.testing.assert_allclose(multi_eval, single_eval, rtol=1e-5)  # (mean loss, accuracy) over all 512 images


@pytest.mark.slow
def test_scan_loop_equals_step_loop():
    model = jaxcnn.create_model("lenet5_mnist")
    tx = torch_adam(1e-3)
    results = []
    for loop in ("step", "scan"):
        trainer = Trainer(model, tx, "raw", "sharding", loop, chunk=4, devices=jax.devices()[:1])
        rng = np.random.default_rng(0)
        imgs, labs = trainer.put_replicated((rng.integers(0, 256, (256, 28, 28, 1)).astype(np.uint8),
                                             rng.integers(0, 10, 256).astype(np.int32)))
        state = trainer.replicate_state(init_state(model, tx, jax.random.PRNGKey(0)))
        state, losses = trainer.train_steps(state, imgs, labs, epoch_order(0, 1, 256, 25)[:10], jax.random.PRNGKey(1))
        results.append((trainer.unreplicate(state).params, trainer.host_losses(losses)))
    assert len(results[1][1]) == 10  # two scans of 4, then 2 single steps
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    for a, b in zip(*(jax.tree_util.tree_leaves(r[0]) for r in results)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _config(tmp_path, **kwargs):
    base = dict(model="lenet5_mnist", data_dir=str(MNIST_DIR), out=str(tmp_path / "run"), train_subset=2000,
                test_subset=500, devices=1, progress=False)
    return Config(**(base | kwargs))


def test_run_writes_metrics_curves_checkpoints_and_torch_export(tmp_path, mnist_data):
    config = _config(tmp_path, epochs=2, export_torch=str(tmp_path / "lenet.pt"))
    metrics = train_and_evaluate(config)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["final"].keys() == {"test_accuracy", "test_loss", "train_seconds", "compile_seconds",
                                     "train_compile_seconds", "eval_compile_seconds", "init_seconds"}
    assert saved["final"]["compile_seconds"] == saved["final"]["train_compile_seconds"] + saved["final"][
        "eval_compile_seconds"]
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert set(saved["epochs"][0]) == {"epoch", "train_loss", "test_loss", "test_accuracy", "seconds",
                                       "seconds_since_start"}
    since_start = [e["seconds_since_start"] for e in saved["epochs"]]
    assert 0 < since_start[0] < since_start[1] and since_start[1] - since_start[0] >= saved["epochs"][1]["seconds"]
    assert saved["config"]["batch_size"] == 100 and saved["config"]["preprocess"] == "raw"
    assert metrics["final"]["test_accuracy"] > 0.8
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    # the exported file loads strictly into an independent torch LeNet5 and predicts what Flax predicts
    module = torch_models.create("lenet5_mnist")
    module.load_state_dict(torch.load(tmp_path / "lenet.pt", weights_only=True), strict=True)
    x = torch.from_numpy(mnist_data.test_images[:500, :, :, 0].astype(np.float32)).reshape(500, 1, 28, 28)
    with torch.no_grad():
        torch_pred = module.eval()(x.clone()).argmax(1).numpy()
    torch_accuracy = float(np.mean(torch_pred == mnist_data.test_labels[:500]))
    assert abs(torch_accuracy - metrics["final"]["test_accuracy"]) < 1e-9


@pytest.mark.mnist
@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_the_same_parameters(tmp_path):
    full = tmp_path / "full"
    train_and_evaluate(_config(tmp_path, epochs=2, out=str(full), model="cnn_bn_dropout"))
    part = tmp_path / "part"
    train_and_evaluate(_config(tmp_path, epochs=1, out=str(part), model="cnn_bn_dropout"))
    resumed = train_and_evaluate(_config(tmp_path, epochs=2, out=str(part), model="cnn_bn_dropout", resume=True))
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    (a, meta_a), (b, meta_b) = (restore_on_one_device(d, 2, "cnn_bn_dropout", "adam") for d in (full, part))
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)
    assert [e["train_loss"] for e in meta_a["epochs"]] == [e["train_loss"] for e in meta_b["epochs"]]


def restore_on_one_device(out, epoch, model_name, optimizer, lr=1e-3):
    """A checkpoint's state on this process's first device, whatever topology saved it."""
    model, _ = fit.build_model(model_name, "torch")
    template = init_state(model, create_optimizer(optimizer, lr), jax.random.PRNGKey(0))
    template = jax.device_put(template, jax.devices()[0])
    state, meta = Checkpoints(out).restore(epoch, template)
    return jax.tree_util.tree_map(np.asarray, state), meta


@pytest.mark.slow  # the detection itself: tests/test_flags.py
@pytest.mark.mnist
def test_nan_loss_stops_with_step_and_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    train_and_evaluate(_config(tmp_path, epochs=1))
    with pytest.raises(fit.TrainingError, match=r"loss is nan at step \d+ of epoch 2 .*last good checkpoint"):
        # Adam steps lr * sign(g): logits overflow
        train_and_evaluate(_config(tmp_path, epochs=2, resume=True, lr=3e38, allow_changes=True))
    assert (tmp_path / "run" / "checkpoints" / "1").is_dir()
    assert not (tmp_path / "run" / "checkpoints" / "2").exists()
    with pytest.raises(fit.TrainingError, match=r"other settings: --optimizer 'adam' \(saved\) -> 'sgd' \(now\)"):
        train_and_evaluate(_config(tmp_path, epochs=2, resume=True, optimizer="sgd"))


@pytest.mark.mnist
def test_cli_errors(tmp_path, capsys):
    assert mnist.main(["--model", "vgg16", "--data-dir", str(MNIST_DIR), "--out", str(tmp_path), "--no-compile-cache"]) == 1
    assert "does not take MNIST's 28x28x1 images" in capsys.readouterr().err
    assert mnist.main(["--data-dir", str(tmp_path), "--out", str(tmp_path), "--no-compile-cache"]) == 1
    assert "lacks train-images-idx3-ubyte.gz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mnist.main(["--epochs", "0"])
    assert "--epochs: must be >= 1" in capsys.readouterr().err


def test_models_are_configured_for_mnist():
    model, kwargs = fit.build_model("lenet5_classic", "torch")
    assert kwargs == {"input_size": 28} and model.input_shape == (28, 28, 1)
    model, kwargs = fit.build_model("cnn_basic", "torch")
    assert kwargs == {"in_channels": 1, "num_classes": 10}


@pytest.mark.slow
def test_lenet5_adam_trajectory_equals_the_notebook_loop(mnist_data):
    """100 Adam steps of notebook 002's loop in torch and train.trainer.step in Flax, float64 on both sides."""
    subset = mnist_data.subset(10_000)
    torch_losses, flax_losses = trajectory.lenet5_adam_losses(subset.train_images, subset.train_labels, 100,
                                                              double=True)
    assert len(flax_losses) == 100
    assert all(abs(a - b) <= 1e-4 * abs(a) for a, b in zip(torch_losses, flax_losses))


def test_lenet5_adam_trajectory_in_float32_agrees_until_rounding_chaos(mnist_data):
    """float32: the first 30 steps agree within 1e-4 (measured: up to step 38, then Adam amplifies rounding)."""
    subset = mnist_data.subset(10_000)
    torch_losses, flax_losses = trajectory.lenet5_adam_losses(subset.train_images, subset.train_labels, 30)
    assert all(abs(a - b) <= 1e-4 * abs(a) for a, b in zip(torch_losses, flax_losses))


def test_fashion_mnist_files_are_checked_against_their_own_sums(tiny_idx):
    with pytest.raises(DataError, match=r"sha256 .*expected 3aede38d"):
        mnist_reader.load_idx(tiny_idx, "fashion_mnist")
    with pytest.raises(DataError, match=r"unknown dataset 'kmnist'"):
        mnist_reader.load_idx(tiny_idx, "kmnist")


def test_epoch_order_drops_the_partial_batch_and_is_reproducible():
    order = epoch_order(3, 2, 1050, 100)
    assert order.shape == (10, 100) and len(np.unique(order)) == 1000
    np.testing.assert_array_equal(order, epoch_order(3, 2, 1050, 100))
    assert not np.array_equal(order, epoch_order(3, 3, 1050, 100))


@pytest.mark.slow
def test_loop_benchmark_runs_every_variant():
    for conv in ("auto", "xla"):
        results = loopbench.measure(steps=3, batch=8, conv=conv)
        assert len(results) == 6 and all(ms > 0 for ms in results.values())
    lenet = functools.partial(jaxcnn.create_model, "lenet5_mnist")  # what --conv picks: a model argument
    assert runs_xla_convolutions(lenet(conv_implementation="xla")) and not runs_xla_convolutions(lenet())


@pytest.mark.slow
def test_benchmark_harness_smoke(mnist_data):
    results = throughput.benchmark(mnist_data.subset(1000, 200), steps=3, repeats=1, with_compile=False, notebook_steps=4)
    for name in ("lenet5_mnist", "mnist_cnn"):
        row = results[name]
        for key in ("flax_train_images_per_s", "torch_eager_train_images_per_s", "flax_infer_images_per_s",
                    "torch_infer_images_per_s", "train_ratio_flax_over_torch_eager", "flax_seconds_per_epoch",
                    "torch_eager_seconds_per_epoch", "notebook_002_seconds_per_epoch",
                    "notebook_004_seconds_per_epoch"):
            assert row[key] > 0, key
        assert row["notebook_loop_steps_timed"] == 4
        nnx = results["nnx_vs_linen"][name]  # the NNX step's row: its rates, and the same XLA program as linen's
        assert nnx["linen_train_images_per_s"] > 0 and nnx["nnx_train_images_per_s"] > 0 and nnx["same_compiled_step"]
    fast, notebook = results["time_to_99"], results["time_to_99_notebook_recipe"]
    assert fast["recipe"] == throughput.FAST_RECIPE and 1 <= fast["epochs"] <= throughput.FAST_RECIPE["epochs"]
    assert notebook["recipe"]["lr"] == 1e-3 and notebook["recipe"]["batch_size"] == 64
    for t in (fast, notebook):
        assert t["train_seconds"] > 0 and len(t["test_accuracy_per_epoch"]) == t["epochs"]
        assert t["reached"] == (t["test_accuracy_per_epoch"][-1] >= 0.99)
    assert results["device"]["jax_platform"] == "cpu" and results["device"]["torch"] == "cpu"
    assert {"jax", "jaxlib", "torch", "cuda", "cudnn", "flax", "optax"} <= set(results["versions"])


def test_auto_loop_scans_unless_the_model_runs_xla_convolutions_on_cpu():
    lenet, cnn = jaxcnn.create_model("lenet5_mnist"), jaxcnn.create_model("mnist_cnn")
    assert not runs_xla_convolutions(lenet) and runs_xla_convolutions(cnn)  # LeNet-5's convolutions are banded
    one_cpu = jax.devices()[:1]
    lenet_trainer = Trainer(lenet, optax.adam(1e-3), "raw", devices=one_cpu)
    cnn_trainer = Trainer(cnn, optax.adam(1e-3), "normalize", devices=one_cpu)
    assert (lenet_trainer.loop, lenet_trainer.micro_batches) == ("scan", 1)
    assert (cnn_trainer.loop, cnn_trainer.micro_batches) == ("step", CPU_MICRO_BATCHES)
    assert Trainer(cnn, optax.adam(1e-3), "normalize", loop="scan").loop == "scan"
    with pytest.raises(ValueError, match="loop must be 'auto', 'step' or 'scan', got 'fast'"):
        Trainer(cnn, optax.adam(1e-3), "normalize", loop="fast")


def test_named_recipe_fills_what_the_command_line_leaves_out():
    config = mnist.parse_args(["--recipe", "one_epoch_99", "--epochs", "2", "--no-compile-cache"])
    recipe = train_recipes.named("one_epoch_99")
    assert (config.model, config.recipe, config.epochs) == (recipe["model"], "one_epoch_99", 2)
    assert (config.lr, config.batch_size, config.schedule) == (recipe["lr"], recipe["batch_size"], "onecycle")
    plain = mnist.parse_args(["--no-compile-cache"])
    assert (plain.model, plain.schedule, plain.lr, plain.recipe) == ("lenet5_mnist", "constant", 1e-3, None)
    with pytest.raises(SystemExit):
        mnist.parse_args(["--recipe", "no_such_recipe"])


def test_onecycle_learning_rate_peaks_after_warmup_and_anneals():
    schedule = learning_rate(3e-3, "onecycle", total_steps=100, warmup_fraction=0.25)
    values = np.array([float(schedule(i)) for i in range(101)])
    assert values.argmax() == 25 and values.max() == pytest.approx(3e-3)
    assert values[0] == pytest.approx(3e-3 / 25) and values[-1] < 1e-6
    assert learning_rate(1e-3) == 1e-3
    with pytest.raises(ValueError, match="total number of steps"):
        learning_rate(1e-3, "onecycle")
    # a schedule reaches the update: the first Adam step moves a weight by the schedule's first value
    tx = create_optimizer("adam", schedule)
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update({"w": jnp.full(3, 0.5)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -3e-3 / 25, rtol=1e-5)


def test_label_smoothing_is_torchs():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 10)), rng.integers(0, 10, 6)
    for smoothing in (0.0, 0.1):
        theirs = torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction="none")(
            torch.from_numpy(logits), torch.from_numpy(labels))
        with jax.enable_x64(True):
            ours = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing)
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-12)
