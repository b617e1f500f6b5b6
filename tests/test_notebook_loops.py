"""The notebooks' torch loops that parity.bench times compute what the tensor loop computes: same pixels out of
the DataLoader pipeline, same weights after the same batches."""

import numpy as np
import pytest
import torch

from jaxcnn.preprocess import PREPROCESS
from parity.originals import notebook_loops


def _mnist_like(n: int = 64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32)


def test_pil_dataset_gives_notebook_004s_normalized_pixels():
    images, labels = _mnist_like()
    x, y = notebook_loops.PilMnist(images, labels)[5]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == labels[5]
    expected = np.asarray(PREPROCESS["normalize"](images[5]))[..., 0]
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=0, atol=1e-6)


def test_notebook_002_loop_trains_like_the_tensor_loop():
    images, labels = _mnist_like()
    order = np.arange(64).reshape(4, 16)[::-1].copy()
    device = torch.device("cpu")
    loops = [loop("lenet5_mnist", images, labels, "raw", 1e-3, 16, device)
             for loop in (notebook_loops.tensor_loop, notebook_loops.notebook_002_loop)]
    before = {k: v.clone() for k, v in loops[0].module.state_dict().items()}
    for loop in loops:
        assert notebook_loops.timed_steps(loop, order, device) > 0
    after = [loop.module.state_dict() for loop in loops]
    assert not torch.equal(after[0]["fc3.weight"], before["fc3.weight"])  # it trained
    assert all(torch.equal(after[0][k], after[1][k]) for k in before)


def test_notebook_004_loop_runs_its_steps_through_the_data_loader():
    images, labels = _mnist_like()
    loop = notebook_loops.notebook_004_loop("mnist_cnn", images, labels, "normalize", 1e-3, 16, torch.device("cpu"),
                                            num_workers=0)
    before = loop.module.conv_stack[0].weight.clone()
    loop(np.zeros((3, 16), np.int32))
    assert not torch.equal(loop.module.conv_stack[0].weight, before)


def test_torch_device_follows_jax():
    assert notebook_loops.torch_device("cpu") == torch.device("cpu")
    assert notebook_loops.torch_device("gpu").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
def test_the_finetuning_bench_rows_measure_loader_step_and_pipeline():
    from parity.bench import finetune

    rows = finetune.finetune_rows(["alexnet"], batch=4, steps=1, repeats=1, photos=24, workers=0)
    row = rows["alexnet"]
    for key in ("flax_loader_images_per_s", "flax_step_images_per_s", "flax_pipeline_images_per_s",
                "torch_loader_images_per_s", "torch_eager_step_images_per_s", "torch_eager_pipeline_images_per_s"):
        assert row[key] > 0, key
    assert row["image_size"] == 224 and row["frozen"] == "features"
