"""python -m train.inspect --weights FILE [--image PHOTO]: notebook 004's AlexNet cell and the tools on a photo,
with torchvision-format weights written by parity's twins (random weights; the classifier's bias makes the top
classes clear-cut)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import jaxcnn
from jaxcnn.imagenet import CATEGORIES, IMAGENET, Preprocessing
from parity.hub import pretrained
from parity.originals import torchvision_models
from train import inspect as inspect_cli
from train.inspection import figures

WRITTEN = {"filters.png", "saliency.png", "guided_backprop.png", "occlusion.png", "index.md"}


def _weights(module: torch.nn.Module, name: str, folder: Path) -> tuple[Path, torch.nn.Module]:
    """A pretrained file of `module` (torchvision's layout) with the last bias spread over [0, 10): its top-5 are
    the five largest biases, 0.01 apart at least, far beyond float32 differences between torch and JAX."""
    with torch.no_grad():
        module.classifier[6].bias.copy_(torch.randperm(1000, generator=torch.Generator().manual_seed(1)) * 0.01)
    pth, out = folder / f"{name}.pth", folder / f"{name}.safetensors"
    torch.save(module.state_dict(), pth)
    pretrained.convert(name, pth, out, origin=str(pth), digest="test")
    return out, module.eval()


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory):
    torch.manual_seed(0)
    return _weights(torchvision_models.AlexNet(), "alexnet", tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    pixels = np.random.default_rng(0).uniform(0, 255, (300, 400, 3)).astype(np.uint8)  # landscape: H 300, W 400
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _check_photo_run(weights, module, photo, tmp_path, capsys, stride: str):
    out = tmp_path / "out"
    assert inspect_cli.main(["--weights", str(weights), "--image", str(photo), "--out", str(out),
                             "--occlusion-stride", stride]) == 0
    printed = capsys.readouterr().out.splitlines()
    x = IMAGENET(photo)  # (224, 224, 3)
    with torch.no_grad():
        torch_logits = module(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])[0].numpy()
    expected = np.argsort(-torch_logits)[:5]
    assert printed[:5] == [f"{rank}. {CATEGORIES[i]} (class {i}): P = {p:.3f}" for rank, (i, p) in
                           enumerate(zip(expected, np.exp(torch_logits[expected]) / np.exp(torch_logits).sum()), 1)]
    assert {p.name for p in out.iterdir()} == WRITTEN
    assert f"occlusion.png" in (out / "index.md").read_text() and CATEGORIES[expected[0]] in printed[0]


def test_alexnet_on_a_photo_prints_torchs_top5_by_name_and_draws_every_tool(alexnet, photo, tmp_path, capsys):
    weights, module = alexnet
    _check_photo_run(weights, module, photo, tmp_path, capsys, stride="64")


def test_the_filter_grid_is_the_notebooks_cell(alexnet, tmp_path, monkeypatch):
    """make_grid(alexnet.features[0].weight): the 64 torch filters, 8 per row, 2 pixels apart."""
    weights, module = alexnet
    drawn = {}
    monkeypatch.setattr(figures, "grid_figure", lambda images, path, title, nrow, padding: drawn.update(
        images=images, nrow=nrow, padding=padding, title=title))
    assert inspect_cli.main(["--weights", str(weights), "--out", str(tmp_path / "o")]) == 0
    filters = module.features[0].weight.detach().numpy().transpose(0, 2, 3, 1)  # (64, 3, 11, 11) -> NHWC
    np.testing.assert_array_equal(drawn["images"], filters)
    assert (drawn["nrow"], drawn["padding"]) == (8, 2) and "64 filters of features_0 (11x11x3)" in drawn["title"]


def test_preprocessing_is_torchvisions_resize_crop_and_normalize(photo):
    shown = IMAGENET.resized_and_cropped(photo)
    # Resize(256): the short side (300) to 256, the long one int(256 * 400 / 300) = 341; CenterCrop(224) at
    # top round(32 / 2) = 16, left round(117 / 2) = 58.
    by_hand = Image.open(photo).convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(shown, np.asarray(by_hand)[16:240, 58:282])
    x = IMAGENET(photo)
    np.testing.assert_allclose(x, (shown / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                               rtol=1e-6, atol=1e-6)
    portrait = Image.fromarray(np.zeros((500, 250, 3), np.uint8))
    assert Preprocessing(resize=64, crop=32).resized_and_cropped(portrait).shape == (32, 32, 3)
    assert Preprocessing.from_json(IMAGENET.to_json()) == IMAGENET


def test_errors_name_the_problem_and_write_nothing(alexnet, tmp_path, capsys):
    weights, _ = alexnet
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("hello")
    out = tmp_path / "out"
    assert inspect_cli.main(["--weights", str(weights), "--image", str(not_a_photo), "--out", str(out)]) == 1
    assert "is not an image PIL can read" in capsys.readouterr().err and not out.exists()
    assert inspect_cli.main(["--weights", str(weights), "--model", "vgg16", "--out", str(out)]) == 1
    assert "holds alexnet's weights, not vgg16's" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        inspect_cli.main(["--checkpoint", str(tmp_path), "--image", str(not_a_photo), "--out", str(out)])
    assert "--image goes with --weights" in capsys.readouterr().err


def test_a_plain_torch_keyed_file_needs_its_model_and_shows_filters_only(alexnet, photo, tmp_path, capsys):
    weights, _ = alexnet
    plain = tmp_path / "plain.safetensors"
    jaxcnn.write_torch_safetensors(jaxcnn.read_torch_safetensors(weights), plain)  # no metadata
    assert inspect_cli.main(["--weights", str(plain), "--out", str(tmp_path / "o")]) == 1
    assert "does not record its network" in capsys.readouterr().err
    assert inspect_cli.main(["--weights", str(plain), "--model", "alexnet", "--out", str(tmp_path / "o")]) == 0
    assert inspect_cli.main(["--weights", str(plain), "--model", "alexnet", "--image", str(photo),
                             "--out", str(tmp_path / "p")]) == 1
    assert "records no preprocessing" in capsys.readouterr().err


@pytest.mark.slow
def test_vgg16_on_a_photo(photo, tmp_path, capsys):
    torch.manual_seed(0)
    weights, module = _weights(torchvision_models.vgg("vgg16", batch_norm=False), "vgg16", tmp_path)
    _check_photo_run(weights, module, photo, tmp_path, capsys, stride="96")
