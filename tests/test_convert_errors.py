"""The converter is strict: every missing key, unexpected key and shape mismatch, in one error; the command
turns every failure into a short line."""

import errno

import pytest
import safetensors.numpy
import torch

import jaxcnn
from parity.__main__ import main
from parity.checks import convert
from parity.originals import torch_models


def _lenet():
    torch.manual_seed(0)
    return torch_models.create("lenet5_mnist"), jaxcnn.create_model("lenet5_mnist")


def test_missing_key_is_listed():
    module, model = _lenet()
    state = module.state_dict()
    del state["fc2.bias"]
    with pytest.raises(convert.ConversionError, match=r"missing keys \(1.*\n\s+params/fc2/bias") as err:
        convert.torch_to_flax(state, model)
    assert err.value.missing == ["params/fc2/bias (no torch key maps to it)"]
    assert not err.value.unexpected and not err.value.mismatched


def test_unexpected_key_is_listed():
    module, model = _lenet()
    state = module.state_dict()
    state["fc4.weight"] = torch.zeros(10, 10)
    with pytest.raises(convert.ConversionError, match=r"unexpected keys \(1.*\n\s+fc4.weight") as err:
        convert.torch_to_flax(state, model)
    assert err.value.unexpected == ["fc4.weight"] and not err.value.missing


def test_wrong_shape_is_listed_in_torch_layout():
    module, model = _lenet()
    state = module.state_dict()
    state["conv1.weight"] = torch.zeros(6, 1, 3, 3)
    with pytest.raises(convert.ConversionError,
                       match=r"conv1.weight: got \(6, 1, 3, 3\), the model expects \(6, 1, 5, 5\)") as err:
        convert.torch_to_flax(state, model)
    assert len(err.value.mismatched) == 1


def test_all_problems_come_in_one_error():
    module, model = _lenet()
    state = module.state_dict()
    del state["conv2.weight"], state["fc3.bias"]
    state["fc1.weight"] = torch.zeros(120, 256)
    state["extra.running_mean"] = torch.zeros(3)
    with pytest.raises(convert.ConversionError) as err:
        convert.torch_to_flax(state, model)
    assert sorted(err.value.missing) == ["params/conv2/kernel (no torch key maps to it)",
                                         "params/fc3/bias (no torch key maps to it)"]
    assert err.value.unexpected == ["extra.running_mean"]
    assert err.value.mismatched == ["fc1.weight: got (120, 256), the model expects (120, 400)"]
    message = str(err.value)
    for needle in ("conv2/kernel", "fc3/bias", "extra.running_mean", "fc1.weight"):
        assert needle in message


def test_wrong_network_reports_both_directions():
    torch.manual_seed(0)
    with pytest.raises(convert.ConversionError) as err:
        convert.torch_to_flax(torch_models.create("mnist_cnn"), jaxcnn.create_model("lenet5_mnist"))
    assert "conv_stack.0.weight" in err.value.unexpected and len(err.value.missing) == 10


def test_num_batches_tracked_is_dropped_but_other_bn_keys_are_required():
    torch.manual_seed(0)
    module, model = torch_models.create("cnn_bn_dropout"), jaxcnn.create_model("cnn_bn_dropout")
    variables = convert.torch_to_flax(module, model)
    assert set(variables["batch_stats"]["conv_1"]) == {"mean", "var"}
    state = module.state_dict()
    del state["conv.4.running_var"]
    with pytest.raises(convert.ConversionError, match="batch_stats/conv_4/var"):
        convert.torch_to_flax(state, model)


def test_flax_names_of_torch_prefixes():
    assert convert.flax_name("conv_stack.0") == "conv_stack_0"
    assert convert.flax_name("12") == "layers_12"
    assert convert.flax_name("features.10") == "features_10"
    assert convert.flax_name("fc1") == "fc1"


CONVERT = ["convert", "--model", "lenet5_mnist"]


@pytest.mark.parametrize("case, words", [
    ("text.pt", "is not a checkpoint torch.load can read"),
    ("missing.pt", "no such file"),
    ("wrong_model.pt", "missing keys"),
])
def test_convert_failures_are_short_lines_naming_the_problem(tmp_path, capsys, case, words):
    source = tmp_path / case
    if case == "text.pt":
        source.write_text("not a checkpoint\n")
    elif case == "wrong_model.pt":
        torch.save(torch_models.create("mnist_cnn").state_dict(), source)
    assert main(CONVERT + [str(source), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert words in err.lower() if case == "missing.pt" else words in err
    assert "Traceback" not in err and not (tmp_path / "out.safetensors").exists()
    with pytest.raises((ValueError, OSError)):  # --debug: the exception itself
        main(CONVERT + ["--debug", str(source), str(tmp_path / "out.safetensors")])


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    source = tmp_path / "lenet.pt"
    torch.save(_lenet()[0].state_dict(), source)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    assert main(CONVERT + [str(source), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]  # no partial file beside it


def test_bfloat16_torch_weights_convert_exactly(tmp_path):
    module, model = _lenet()
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in module.state_dict().items()}
    variables = convert.torch_to_flax(state, model)
    assert variables["params"]["conv1"]["kernel"].dtype == "float32"
    back = convert.flax_to_torch(variables, model, module)
    assert all(torch.equal(back[k].to(torch.bfloat16), state[k]) for k in state if state[k].is_floating_point())
