"""python -m parity pretrained, offline: torchvision-format .pth files written by parity's twins stand in for the
downloads, through a file:// address and as --from FILE."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import jaxcnn
from parity.__main__ import main
from parity.hub import fetch, pretrained
from parity.originals import torchvision_models


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def alexnet_pth(tmp_path_factory) -> tuple[Path, dict]:
    """torchvision's AlexNet state_dict (random weights) saved as torchvision's file is, under its file name."""
    torch.manual_seed(0)
    state = torchvision_models.AlexNet().state_dict()
    path = tmp_path_factory.mktemp("published") / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def published(alexnet_pth, monkeypatch, tmp_path):
    """The table entry of alexnet pointed at the twin's file (file://) with its real hash; the cache in tmp_path."""
    path, _ = alexnet_pth
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    entry = pretrained.Published(path.as_uri(), _sha256(path)[:8])
    monkeypatch.setitem(pretrained.PUBLISHED, "alexnet", entry)
    return entry


def test_the_table_holds_torchvisions_addresses_with_their_hash_prefixes():
    assert sorted(pretrained.PUBLISHED) == ["alexnet", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
    for name, entry in pretrained.PUBLISHED.items():
        assert entry.url.startswith("https://download.pytorch.org/models/")
        assert entry.url.endswith(f"-{entry.sha256}.pth")  # torch.hub's check_hash reads the prefix from the name


def test_download_verifies_caches_and_writes_what_jaxcnn_reads(published, alexnet_pth, tmp_path, capsys,
                                                                monkeypatch):
    path, state = alexnet_pth
    out = tmp_path / "alexnet.safetensors"
    assert main(["pretrained", "alexnet", "--out", str(out)]) == 0
    cached = tmp_path / "cache" / "jaxcnn" / path.name
    assert cached.read_bytes() == path.read_bytes() and not list(cached.parent.glob("*.part"))
    written = jaxcnn.read_torch_safetensors(out)
    assert sorted(written) == sorted(state)  # torch's keys and layouts, the same bits
    for key, tensor in state.items():
        np.testing.assert_array_equal(written[key], tensor.numpy())
    model, variables, about = jaxcnn.load_pretrained(out)
    assert (about.model, about.source, about.sha256) == ("alexnet", published.url, _sha256(path))
    assert about.classes == jaxcnn.imagenet.CATEGORIES and about.preprocessing == jaxcnn.imagenet.IMAGENET
    assert model.num_classes == 1000 and "1000 classes" in capsys.readouterr().out
    # A second run reads the cache: the address may be gone.
    monkeypatch.setitem(pretrained.PUBLISHED, "alexnet",
                        pretrained.Published("file:///nonexistent/" + path.name, published.sha256))
    assert main(["pretrained", "alexnet", "--out", str(out), "--overwrite"]) == 0


def test_a_download_with_the_wrong_hash_is_refused_and_nothing_is_kept(alexnet_pth, monkeypatch, tmp_path, capsys):
    path, _ = alexnet_pth
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(pretrained.PUBLISHED, "alexnet", pretrained.Published(path.as_uri(), "0123abcd"))
    out = tmp_path / "a.safetensors"
    assert main(["pretrained", "alexnet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert _sha256(path) in err and "0123abcd" in err
    assert not out.exists() and not list((tmp_path / "cache" / "jaxcnn").iterdir())


def test_from_file_checks_the_same_hash_unless_trusted(alexnet_pth, tmp_path, capsys):
    path, _ = alexnet_pth  # the real table: the twin's hash is not torchvision's 7be5be79...
    out = tmp_path / "a.safetensors"
    assert main(["pretrained", "alexnet", "--from", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert _sha256(path) in err and "7be5be79" in err and "--trust-file" in err and not out.exists()
    assert main(["pretrained", "alexnet", "--from", str(path), "--out", str(out), "--trust-file"]) == 0
    assert jaxcnn.read_about(out).sha256 == _sha256(path)


def test_a_truncated_file_is_refused(alexnet_pth, tmp_path, capsys):
    path, _ = alexnet_pth
    cut = tmp_path / path.name
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "a.safetensors"
    assert main(["pretrained", "alexnet", "--from", str(cut), "--out", str(out)]) == 2  # its hash differs
    assert main(["pretrained", "alexnet", "--from", str(cut), "--out", str(out), "--trust-file"]) == 2
    assert "torch.load can read" in capsys.readouterr().err and not out.exists()


def test_a_state_dict_of_another_network_is_refused_naming_it(alexnet_pth, tmp_path, capsys):
    path, _ = alexnet_pth
    out = tmp_path / "v.safetensors"
    assert main(["pretrained", "vgg16", "--from", str(path), "--out", str(out), "--trust-file"]) == 2
    assert "it holds alexnet's weights: give alexnet as NAME" in capsys.readouterr().err and not out.exists()


def test_offline_download_says_to_use_from(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(fetch.FetchError, match="--from FILE"):
        fetch.fetch("http://127.0.0.1:9/alexnet-owt-7be5be79.pth", "7be5be79")
    assert not list((tmp_path / "cache" / "jaxcnn").iterdir())


def test_an_existing_out_is_refused_before_any_download(tmp_path, capsys):
    out = tmp_path / "a.safetensors"
    out.write_bytes(b"mine")
    assert main(["pretrained", "alexnet", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"mine"


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fetch.cache_dir() == tmp_path / "jaxcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fetch.cache_dir() == Path.home() / ".cache" / "jaxcnn"
