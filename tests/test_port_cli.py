"""`python -m parity port file.py:Class --input-shape ... --out DIR`: files, report, refusals."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from parity import port
from parity.__main__ import main
from parity.checks import io
from tests import port_nets

NETS = str(Path(port_nets.__file__))
ROOT = Path(__file__).resolve().parents[1]


def _port(out, target="Inception", shape="2,3,11,11", *extra):
    return main(["port", f"{NETS}:{target}", "--input-shape", shape, "--out", str(out), *extra])


def test_port_writes_model_variables_and_report(tmp_path, capsys):
    out = tmp_path / "inception"
    assert _port(out) == 0
    printed = capsys.readouterr().out
    assert "all checks pass" in printed and "gradients (train)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["model.py", "report.json", "torch_weights.json",
                                                     "variables.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["round_trip_exact"] and report["input_shape_flax"] == [2, 11, 11, 3]
    assert {"forward", "gradients", "forward (train)", "gradients (train)"} <= set(report["checks"])
    assert all(c["ok"] and c["flax_float64"] < 1e-5 for c in report["checks"].values())
    assert report["api"] == "nnx" and "class Inception(nnx.Module)" in (out / "model.py").read_text()  # the default
    net, _ = port.load(out)
    assert type(net).__name__ == "Inception"
    assert net(np.zeros((4, 11, 11, 3), np.float32)).shape == (4, 5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_port_with_trained_weights(tmp_path, suffix):
    torch.manual_seed(1)
    trained = port_nets.Functional()
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(1.5).add_(0.01)
    path = tmp_path / f"trained{suffix}"
    io.save_torch_state(trained.state_dict(), path)
    assert _port(tmp_path / "out", "Functional", "2,1,28,28", "--weights", str(path)) == 0
    model, variables = port.load(tmp_path / "out")
    back = port.torch_state_dict(model, variables)
    assert all(torch.equal(back[k], v) for k, v in trained.state_dict().items())


def test_port_never_replaces_what_is_not_a_port(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _port(out) == 2
    assert "holds no port" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me" and not (out / "model.py").exists()


def test_port_replaces_an_earlier_port_only_with_overwrite_and_takes_kwargs(tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    (out / "model.py").write_text("# an earlier port")
    assert _port(out, "Functional", "2,1,28,28") == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "model.py").read_text() == "# an earlier port"
    assert _port(out, "Functional", "2,1,28,28", "--kwargs", '{"num_classes": 4}', "--overwrite", "--api",
                 "linen") == 0
    assert "layers.Linear(32, 4)" in (out / "model.py").read_text()
    model, variables = port.load(out)
    assert model.apply(variables, np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 4)


@pytest.mark.parametrize("target, shape, words", [
    ("Unsupported", "1,1,8,8", "PixelShuffle"),
    ("NoSuchClass", "1,1,8,8", "its nn.Module classes: AuxiliaryInTraining, Branching"),
    ("Functional", "2,x,28", "--input-shape"),
    ("Functional", "2,3,28,28", "--input-shape N,C,H,W"),
])
def test_port_refusals_write_nothing(tmp_path, capsys, target, shape, words):
    assert _port(tmp_path / "o", target, shape) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_port_refuses_weights_that_do_not_fit(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    io.save_torch_state(port_nets.TinyResNet().state_dict(), path)
    assert _port(tmp_path / "o", "Functional", "2,1,28,28", "--weights", str(path)) == 2
    assert "conv1.weight" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_readme_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Port your own network"):]
    code = section[section.index("```python") + len("```python"):]
    exec(compile(code[:code.index("```")], "README.md", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "class SmallNet(nnx.Module)" in printed and "round trip" in printed and "FAILED" not in printed


def test_port_on_a_full_disk_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    assert _port(tmp_path / "o", "Functional", "1,1,28,28") == 2
    assert capsys.readouterr().err.startswith("error: No space left on device: ")
    assert sorted(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        _port(tmp_path / "o", "Functional", "1,1,28,28", "--debug")
