"""torch -> Flax -> torch round trips, checkpoint files, the parity CLI, and the 224x224 acceptance."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity import __main__ as cli
from parity.checks import check, convert, io, suite
from parity.originals import torch_models
from tests import helpers, spec


@pytest.mark.parametrize("name", spec.registry())  # VGG's layer kinds: AlexNet's and cnn_bn_dropout's
def test_round_trip_is_bit_exact(name):
    module, model, _, x = helpers.random_pair(name, batch=1)
    assert suite.round_trip_exact(module, model, x.shape)
    state = convert.flax_to_torch(convert.torch_to_flax(module, model, x), model, module, x)
    fresh = torch_models.create(name)
    fresh.load_state_dict(state, strict=True)
    for key, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_round_trip_check_sees_a_changed_tensor(monkeypatch):
    module, model, _, x = helpers.random_pair("lenet5_mnist", batch=1)
    real = convert.flax_to_torch

    def off_by_one_ulp(*args, **kwargs):
        state = real(*args, **kwargs)
        state["fc2.bias"] = torch.nextafter(state["fc2.bias"], torch.full_like(state["fc2.bias"], 10.0))
        return state

    monkeypatch.setattr(convert, "flax_to_torch", off_by_one_ulp)
    assert not suite.round_trip_exact(module, model, x.shape)


def test_flax_to_torch_errors_list_missing_and_extra_variables():
    module, model, variables, x = helpers.random_pair("cnn_bn_dropout", batch=1)
    del variables["batch_stats"]["conv_4"]["var"]
    variables["params"]["extra"] = {"kernel": np.zeros((2, 2), np.float32)}
    variables["params"]["fc_3"]["kernel"] = np.zeros((128, 9), np.float32)
    with pytest.raises(convert.ConversionError) as err:
        convert.flax_to_torch(variables, model, module, x)
    assert err.value.missing == ["batch_stats/conv_4/var"]
    assert err.value.unexpected == ["params/extra/kernel"]
    assert err.value.mismatched == ["params/fc_3/kernel: got (128, 9), expected (128, 10)"]


@pytest.mark.parametrize("name", spec.registry(["vgg16_bn", "vgg19_bn", "alexnet"]))
def test_torchvision_networks_at_224_convert_both_ways(name):
    """Acceptance: torchvision-keyed weights, moved BatchNorm statistics, 224x224: equal outputs, exact return."""
    module, model = suite.random_original(name, seed=0)
    x = check.sample_input(name, (1, 3, 224, 224), 0)
    variables = convert.torch_to_flax(module, model, x)
    result = check.assert_same_outputs(module, model, variables, x, rtol=1e-5)
    assert result.flax_shape == (1, 1000)
    assert suite.round_trip_exact(module, model, x.shape)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("flax_suffix", [".safetensors", ""])
def test_files_convert_both_ways(tmp_path, suffix, flax_suffix):
    module, model, variables, x = helpers.random_pair("cnn_bn_dropout", batch=2)
    torch_file, flax_file, back = tmp_path / f"in{suffix}", tmp_path / f"flax{flax_suffix or '_ckpt'}", tmp_path / f"back{suffix}"
    io.save_torch_state(module.state_dict(), torch_file)
    assert io.convert_file("cnn_bn_dropout", torch_file, flax_file) == "torch -> Flax"
    assert io.holds_flax(flax_file) and not io.holds_flax(torch_file)
    restored = io.load_flax(flax_file)
    check.assert_same_outputs(module, model, restored, x)
    assert io.convert_file("cnn_bn_dropout", flax_file, back) == "Flax -> torch"
    state = io.load_torch_state(back)
    assert set(state) == set(module.state_dict())
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):  # Flax keeps no such count: a fresh module's 0 comes back
            assert int(state[key]) == 0
        else:
            assert torch.equal(state[key], value), key


def test_wrapped_and_bad_torch_files(tmp_path):
    module, _, _, _ = helpers.random_pair("lenet5_mnist", batch=1)
    torch.save({"state_dict": module.state_dict(), "epoch": 3}, tmp_path / "wrapped.pth")
    assert set(io.load_torch_state(tmp_path / "wrapped.pth")) == set(module.state_dict())
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        io.load_torch_state(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.load_torch_state(tmp_path / "missing.pt")
    with pytest.raises(convert.ConversionError, match="unexpected keys"):
        io.convert_file("mnist_cnn", tmp_path / "wrapped.pth", tmp_path / "out.safetensors")


def test_cli_convert_and_check(tmp_path, capsys):
    module, _, _, _ = helpers.random_pair("mnist_cnn", batch=1)
    torch.save(module.state_dict(), tmp_path / "m.pth")
    assert cli.main(["convert", "--model", "mnist_cnn", str(tmp_path / "m.pth"), str(tmp_path / "m.safetensors")]) == 0
    assert cli.main(["check", "--models", "mnist_cnn", "two_conv_net", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "| mnist_cnn" in out and "bit-exact" in out and "2 passed, 0 failed" in out
    table = json.loads((tmp_path / "t.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["mnist_cnn", "two_conv_net"] and not table["failed"]
    assert table["rows"][0]["parameters"] == 167_478


def test_cli_exits_non_zero_on_a_failure(monkeypatch, capsys):
    monkeypatch.setattr(suite, "round_trip_exact", lambda *a: False)
    assert cli.main(["--models", "two_conv_net"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert cli.main(["--models", "no_such_net"]) == 2


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "parity", "--help"], capture_output=True, text=True, check=True)
    assert "convert" in out.stdout


def test_conversion_never_destroys_what_it_did_not_write(tmp_path, capsys):
    """Issue 15: an existing target, the source itself, a torch suffix for Flax, a foreign directory."""
    source = tmp_path / "a.pt"
    torch.save(torch_models.create("lenet5_mnist").state_dict(), source)
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"precious")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    convert = ["convert", "--model", "lenet5_mnist"]
    assert cli.main(convert + [str(source), str(victim)]) == 2
    assert "exists" in capsys.readouterr().err and victim.read_bytes() == b"precious"
    assert cli.main(convert + [str(source), str(source)]) == 2
    assert "source itself" in capsys.readouterr().err and io.load_torch_state(source)
    assert cli.main(convert + ["--overwrite", str(source), str(folder)]) == 2
    assert "holds no orbax checkpoint" in capsys.readouterr().err and (folder / "notes.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="torch state_dicts"):
        io.convert_file("lenet5_mnist", source, tmp_path / "new.pth")  # torch -> Flax cannot go to .pth
    assert not (tmp_path / "new.pth").exists()
    # an orbax target: written whole, then replaced only with --overwrite; nothing left beside it
    target = tmp_path / "ckpt"
    assert cli.main(convert + [str(source), str(target)]) == 0
    assert cli.main(convert + [str(source), str(target)]) == 2
    assert cli.main(convert + ["--overwrite", str(source), str(target)]) == 0
    assert io.holds_flax(target) and sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "ckpt", "folder",
                                                                                    "victim.pt"]
