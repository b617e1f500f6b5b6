"""--api nnx: the trainer trains jaxcnn's native NNX networks with the linen path's steps, checkpoints, exact resume,
--export-torch and --weights, and from the same start reaches linen's parameters bit for bit."""

import json

import jax
import numpy as np
import pytest
import torch

import jaxcnn
from parity.originals import torch_models
from tests.conftest import MNIST_DIR
from train import mnist
from train.inspection.trained import load_trained
from train.trainer import fit, resume
from train.trainer.checkpoint import Checkpoints
from train.trainer.data_parallel import Trainer
from train.trainer.nnx_model import NnxModel
from train.trainer.optimizers import create_optimizer, torch_adam
from train.trainer.run import Config
from train.trainer.step import TrainState, epoch_order, init_state, variables_of

MODEL = "cnn_bn_dropout"  # BatchNorm and Dropout: train() and eval() modes, statistics and masks all matter


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """One persistent XLA cache for the file's runs: the later runs load the programs the first compiled."""
    return str(tmp_path_factory.mktemp("xla_cache"))


def _train(out, epochs, compile_cache, *extra) -> int:
    return mnist.main(["--api", "nnx", "--model", MODEL, "--data-dir", str(MNIST_DIR), "--out", str(out),
                       "--epochs", str(epochs), "--batch-size", "32", "--train-subset", "256", "--test-subset", "64",
                       "--devices", "2", "--no-progress", "--compile-cache", compile_cache, *extra])


def _nnx_variables(out, epoch: int):
    """The NNX network's variables (pure dicts under its own paths) and the metadata saved at `epoch`."""
    model, _ = fit.build_model(MODEL, "torch", api="nnx")
    checkpoints = Checkpoints(out)
    try:
        config = checkpoints.meta(epoch)["config"]
        template = init_state(model, create_optimizer(config["optimizer"], config["lr"]), jax.random.PRNGKey(0))
        state, meta = checkpoints.restore(epoch, jax.device_put(template, jax.devices()[0]))
    finally:
        checkpoints.close()
    return model, variables_of(jax.tree_util.tree_map(np.asarray, state)), meta


@pytest.mark.mnist
def test_nnx_run_checkpoints_resumes_exactly_and_exports_to_torch(tmp_path, compile_cache, mnist_data, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _train(full, 2, compile_cache, "--export-torch", str(tmp_path / "full.safetensors")) == 0
    assert _train(part, 1, compile_cache) == 0
    assert _train(part, 2, compile_cache, "--resume", "--export-torch", str(tmp_path / "part.pt")) == 0
    assert "resumed from" in capsys.readouterr().out
    metrics = json.loads((part / "metrics.json").read_text())
    assert metrics["config"]["api"] == "nnx" and metrics["config"]["devices"] == 2

    model, a, meta_a = _nnx_variables(full, 2)
    _, b, meta_b = _nnx_variables(part, 2)
    assert isinstance(model.network(a), jaxcnn.nnx.CNNBatchNormDropout)
    assert set(a) == {"params", "batch_stats"} and 0 in a["params"]["conv"]  # the NNX network's own paths
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b) == 14
    for x, y in zip(leaves_a, leaves_b):  # an interrupted and resumed run ends where the uninterrupted one does
        np.testing.assert_array_equal(x, y)
    assert [e["train_loss"] for e in meta_a["epochs"]] == [e["train_loss"] for e in meta_b["epochs"]]

    # the export loads strictly into the torch original, which computes what the trained NNX network computes
    module = torch_models.create(MODEL, **metrics["config"]["model_kwargs"]).eval()
    module.load_state_dict(torch.load(tmp_path / "part.pt", weights_only=True), strict=True)
    images = mnist_data.test_images[:16]
    with torch.no_grad():
        theirs = module(torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    ours = np.asarray(model.network(b)(images.astype(np.float32)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())

    # train.inspect reads the NNX run as its linen twin; --weights starts an NNX run from the .safetensors export
    trained = load_trained(part)
    np.testing.assert_allclose(trained.model.apply(trained.variables, images), ours, rtol=1e-5, atol=1e-5)
    settings = fit.Settings(model=MODEL, api="nnx", weights=str(tmp_path / "full.safetensors"), epochs=1)
    run = fit.setup(settings, mnist_data.subset(64, 16), devices=jax.devices()[:1])
    state, _ = fit.start_from_weights(run, run.trainer.init_state(1)[0])
    for x, y in zip(jax.tree_util.tree_leaves(variables_of(run.trainer.unreplicate(state))), leaves_a):
        np.testing.assert_array_equal(x, y)


def _linen_and_nnx_steps(name: str, kwargs: dict, devices: list, steps: int = 6, batch: int = 32,
                         settings: fit.Settings | None = None):
    """`steps` Adam steps of the linen network and of its NNX network from the same weights, data order and key,
    data-parallel over `devices`: the final linen variables of each (the NNX one's through jaxcnn.nnx), their losses
    and gradient parts, and the start. With `settings`, each network's optimizer and frozen BatchNorms are the
    run's (fit.optimizer_of: --freeze, --lr-head)."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (256, 28, 28, 1), np.uint8), rng.integers(0, 10, 256).astype(np.int32)
    linen_model, nnx_model = jaxcnn.create_model(name, **kwargs), NnxModel(name, **kwargs)
    (tx, frozen), (nnx_tx, nnx_frozen) = (fit.optimizer_of(settings, model, steps) if settings
                                          else (torch_adam(1e-3), frozenset()) for model in (linen_model, nnx_model))
    start = init_state(linen_model, tx, jax.random.PRNGKey(0))
    converted = nnx_model.from_linen(variables_of(start))
    nnx_start = TrainState(start.step, converted["params"], converted.get("batch_stats", {}),
                           nnx_tx.init(converted["params"]))
    starts = [(linen_model, start, tx, frozen), (nnx_model, nnx_start, nnx_tx, nnx_frozen)]
    results = []
    for model, state, tx, frozen in starts:
        trainer = Trainer(model, tx, "normalize", "sharding", "step", devices=devices, frozen=frozen)
        data, key = trainer.put_replicated((images, labels)), trainer.put_replicated(jax.random.PRNGKey(1))
        state, losses = trainer.train_steps(trainer.replicate_state(state), *data,
                                            epoch_order(0, 1, 256, batch)[:steps], key)
        variables = variables_of(trainer.unreplicate(state))
        results.append((model.linen(variables)[1] if model is nnx_model else variables, trainer.host_losses(losses),
                        trainer.micro_batches))
    return results, variables_of(start)


@pytest.mark.parametrize("name, kwargs, devices", [
    ("cnn_bn_dropout", dict(in_channels=1, dropout=0.0), 2),  # BatchNorm, data-parallel over 2 devices
    ("mnist_cnn", {}, 1),  # one CPU device: the step's gradient in CPU_MICRO_BATCHES parts
])
def test_nnx_and_linen_runs_reach_the_same_parameters(name, kwargs, devices):
    ((linen, linen_losses, linen_parts), (nnx, nnx_losses, nnx_parts)), start = _linen_and_nnx_steps(
        name, kwargs, jax.devices()[:devices])
    assert linen_parts == nnx_parts
    assert jax.tree_util.tree_structure(linen) == jax.tree_util.tree_structure(nnx)
    # the same operations on the same arrays in the same order: measured bit-identical, and asserted so
    for a, b in zip(jax.tree_util.tree_leaves(linen), jax.tree_util.tree_leaves(nnx)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(linen_losses, nnx_losses)
    assert all(np.any(a != b) for a, b in zip(jax.tree_util.tree_leaves(start["params"]),
                                              jax.tree_util.tree_leaves(linen["params"])))  # every parameter trained


def test_nnx_finetuning_freezes_as_linens_and_gives_the_head_its_learning_rate():
    """--api nnx --freeze conv.0 conv.1 (a convolution and its BatchNorm) --lr-head: the frozen parameters and
    that BatchNorm's statistics stay bit-identical over the steps, the rest train (conv.4's statistics too), the
    head at its own learning rate; and the NNX run ends where the linen run with the same flags ends."""
    args = mnist.parse_args(["--api", "nnx", "--freeze", "conv.0", "conv.1", "--lr-head", "1e-2"])
    assert (args.api, tuple(args.freeze), args.lr_head) == ("nnx", ("conv.0", "conv.1"), 1e-2)
    steps, lr, lr_head = 2, 1e-3, 1e-2
    settings = fit.Settings(model=MODEL, api="nnx", optimizer="adam", lr=lr, lr_head=lr_head, batch_size=32,
                            epochs=1, freeze=("conv.0", "conv.1"))
    ((linen, _, _), (nnx, _, _)), start = _linen_and_nnx_steps(MODEL, dict(in_channels=1, dropout=0.0),
                                                                jax.devices()[:1], steps, settings=settings)
    for a, b in zip(jax.tree_util.tree_leaves(linen), jax.tree_util.tree_leaves(nnx)):
        np.testing.assert_array_equal(a, b)
    for collection, layers in start.items():
        for layer, leaves in layers.items():
            for leaf, before in leaves.items():
                after = nnx[collection][layer][leaf]
                if layer in ("conv_0", "conv_1"):
                    np.testing.assert_array_equal(after, before, err_msg=f"{collection}/{layer}/{leaf}")
                else:
                    assert np.any(after != before), f"{collection}/{layer}/{leaf} did not train"
    moved = {layer: np.abs(nnx["params"][layer]["kernel"] - start["params"][layer]["kernel"]).max()
             for layer in ("fc_0", "fc_3")}
    assert moved["fc_0"] <= steps * lr * 1.001 < 2 * steps * lr < moved["fc_3"] <= steps * lr_head * 1.001, moved


def test_resume_refuses_a_checkpoint_of_the_other_api():
    for saved, api in (({"api": "nnx"}, "linen"), ({}, "nnx")):  # {}: a checkpoint from before --api, linen's
        with pytest.raises(fit.TrainingError, match=r"holds a (nnx|linen) network's state and --api"):
            resume.check_settings(saved, Config(api=api, resume=True, allow_changes=True))
