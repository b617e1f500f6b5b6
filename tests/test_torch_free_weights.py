"""jaxcnn's torch-free interchange: torch-keyed numpy mappings and .safetensors files <-> Flax variables."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors.torch
import torch

import jaxcnn
from parity.checks import check, convert, io, suite
from parity.originals import torch_models
from tests import helpers, spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_torch_keys_are_the_originals_state_dict_keys_in_order(name):
    model = jaxcnn.create_model(name)
    keys = jaxcnn.torch_keys(model, sample_shape_nchw=suite.input_shape(model, 1))
    assert keys == list(helpers.shapes_only(name).state_dict())
    assert set(keys) == spec.state_dict_keys(name)


@pytest.mark.parametrize("name", spec.NINE)
def test_safetensors_round_trip_through_torch_is_bit_exact(name, tmp_path):
    module, model = suite.random_original(name)
    path = tmp_path / f"{name}.safetensors"
    io.save_torch_state(module.state_dict(), path)  # torch writes it
    variables = jaxcnn.load_torch_weights(model, path)  # jaxcnn reads it, without torch
    reference = convert.torch_to_flax(module, model)
    for ours, theirs in zip(jax_leaves(variables), jax_leaves(reference)):
        np.testing.assert_array_equal(ours, theirs)
    out = tmp_path / "back.safetensors"
    jaxcnn.write_torch_safetensors(jaxcnn.torch_state_dict(model, variables), out)  # jaxcnn writes it
    back = safetensors.torch.load_file(str(out))  # torch reads it
    fresh = torch_models.create(name)
    fresh.load_state_dict(back, strict=True)
    for key, tensor in module.state_dict().items():  # Flax keeps no step count: num_batches_tracked comes back 0
        expected = torch.zeros_like(tensor) if key.endswith("num_batches_tracked") else tensor
        assert torch.equal(fresh.state_dict()[key], expected) and back[key].dtype == tensor.dtype, key


def jax_leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_converted_weights_predict_what_torch_predicts():
    module, model = suite.random_original("mnist_cnn")
    state = {k: v.numpy() for k, v in module.state_dict().items()}  # a plain numpy mapping
    x = check.sample_input("mnist_cnn", (4, 1, 28, 28))
    assert check.compare_outputs(module, model, jaxcnn.load_torch_weights(model, state), x).ok


def test_missing_unexpected_and_misshaped_keys_are_listed_together():
    model = jaxcnn.create_model("lenet5_mnist")
    state = jaxcnn.torch_state_dict(model, model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32)))
    del state["fc2.bias"]
    state["fc4.weight"] = np.zeros((3, 3), np.float32)
    state["conv1.weight"] = np.zeros((6, 1, 3, 3), np.float32)
    with pytest.raises(jaxcnn.ConversionError) as err:
        jaxcnn.load_torch_weights(model, state)
    text = str(err.value)
    assert "params/fc2/bias" in text and "fc4.weight" in text and "conv1.weight: got (6, 1, 3, 3)" in text


def test_files_jaxcnn_cannot_read_get_errors_that_name_the_fix(tmp_path):
    model = jaxcnn.create_model("lenet5_mnist")
    with pytest.raises(ValueError, match="python -m parity convert"):
        jaxcnn.load_torch_weights(model, tmp_path / "lenet.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        jaxcnn.load_torch_weights(model, tmp_path / "absent.safetensors")
    flax_file = tmp_path / "flax.safetensors"
    io.save_flax(convert.torch_to_flax(torch_models.create("lenet5_mnist"), model), flax_file)
    with pytest.raises(ValueError, match="holds Flax variables"):
        jaxcnn.load_torch_weights(model, flax_file)


def test_reading_and_writing_torch_weights_needs_no_torch(tmp_path):
    source = tmp_path / "cnn.safetensors"
    io.save_torch_state(torch_models.create("cnn_bn_dropout").state_dict(), source)
    code = (f"import sys, jax, numpy as np, jaxcnn\n"
            f"model = jaxcnn.create_model('cnn_bn_dropout')\n"
            f"variables = jaxcnn.load_torch_weights(model, {str(source)!r})\n"
            f"jaxcnn.write_torch_safetensors(jaxcnn.torch_state_dict(model, variables), {str(tmp_path / 'out.safetensors')!r})\n"
            f"assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]
    back = safetensors.torch.load_file(str(tmp_path / "out.safetensors"))
    for key, tensor in safetensors.torch.load_file(str(source)).items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(back[key], tensor), key


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_written_weights_get_a_new_files_usual_mode(tmp_path, mask):
    """safetensors writes its files 0600; what jaxcnn writes follows the umask like any new file."""
    state = {"fc.weight": np.zeros((2, 3), np.float32)}
    old = os.umask(mask)
    try:
        jaxcnn.write_torch_safetensors(state, tmp_path / "w.safetensors")
        jaxcnn.files.write_text(tmp_path / "a.txt", "text")
    finally:
        os.umask(old)
    for name in ("w.safetensors", "a.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "w.safetensors"]  # no temporary left
