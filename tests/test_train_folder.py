"""python -m train.folder: a user's ImageFolder tree streamed from disk through the grain pipeline — exact resume,
the same run whatever the workers and devices, a self-describing export that train.inspect names classes with,
clear failures — and fine-tuning through the stream against torch's (head replaced, features frozen)."""

import json

import jax
import numpy as np
import pytest
import torch
from PIL import Image

import jaxcnn
from parity.checks.trainer_steps import compare_trainer_epoch
from parity.originals import torch_models
from parity.originals.notebook_loops import FolderImages
from train import folder, inspect
from train.trainer import finetune, fit
from train.trainer.stream import FolderData

FAST = ["--no-compile-cache", "--no-progress", "--batch-size", "8", "--image-size", "32"]
CLASSES = ("bird", "cat", "dog")  # as ImageFolder sorts them


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """train/<class>/ 16 JPEGs, val/<class>/ 4, each 40x48 with its class's bright band (learnable)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 4)):
        for c, name in enumerate(CLASSES[::-1]):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
                image[:, 16 * c: 16 * c + 16] = 235
                Image.fromarray(image).save(root / split / name / f"{i:02d}.jpg", quality=95)
    return root


def _run(photos, out, *flags):
    return folder.main(["--data-dir", str(photos), "--out", str(out), "--model", "cifar_conv_mlp", *FAST, *flags])


def _params(out):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(inspect.load_trained(out).variables["params"])]


def test_a_folder_run_resumes_exactly_and_its_export_names_the_classes(photos, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(photos, straight, "--epochs", "2", "--workers", "0", "--devices", "1") == 0
    assert _run(photos, resumed, "--epochs", "1", "--workers", "0", "--devices", "1") == 0
    assert _run(photos, resumed, "--epochs", "2", "--workers", "0", "--devices", "1", "--resume",
                "--export-torch", str(tmp_path / "photos.safetensors")) == 0
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["config"]["classes"] == list(CLASSES) and metrics["config"]["augment"] == "random_resized_crop"
    about = jaxcnn.read_about(tmp_path / "photos.safetensors")
    assert about.classes == CLASSES and about.preprocessing.crop == 32 and about.preprocessing.mean == (0.5,) * 3
    capsys.readouterr()
    assert inspect.main(["--checkpoint", str(straight), "--out", str(tmp_path / "no")]) == 1
    assert "streamed from disk: export it" in capsys.readouterr().err
    assert inspect.main(["--weights", str(tmp_path / "photos.safetensors"), "--image",
                         str(photos / "val" / "dog" / "00.jpg"), "--out", str(tmp_path / "inspect"), "--top", "3"]) == 0
    assert {line.split(" (class")[0].split(". ")[1] for line in capsys.readouterr().out.splitlines()[:3]} == set(CLASSES)


@pytest.mark.slow  # worker start-up; the fast set checks resume
def test_workers_and_devices_do_not_change_the_run(photos, tmp_path):
    """The order and every augmentation draw depend on (seed, epoch, image) alone: 2 worker processes give the
    in-process run's parameters bit for bit; 8 devices the one-device run's to rounding (SGD: Adam's per-entry
    normalisation would turn the 8-way sum's rounding into O(lr) steps, see tests/test_train.py)."""
    runs = {}
    for name, flags in (("in-process", ["--workers", "0", "--devices", "1"]),
                        ("workers", ["--workers", "2", "--devices", "1"]), ("8 devices", ["--workers", "0"])):
        assert _run(photos, tmp_path / name, "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05", *flags) == 0
        runs[name] = _params(tmp_path / name)
    for a, b, c in zip(runs["in-process"], runs["workers"], runs["8 devices"]):
        np.testing.assert_array_equal(a, b)
        assert np.max(np.abs(a - c)) <= 1e-5 * np.max(np.abs(a))


def test_folder_failures_are_one_line(photos, tmp_path, capsys):
    broken = tmp_path / "broken"
    for split in ("train", "val"):
        for name in CLASSES:
            (broken / split / name).mkdir(parents=True)
            for i in range(2):
                (broken / split / name / f"{i}.jpg").write_bytes((photos / split / name / f"{i:02d}.jpg").read_bytes())
    (broken / "train" / "cat" / "9.jpg").write_bytes(b"not a jpeg")
    assert _run(broken, tmp_path / "r1", "--epochs", "1", "--workers", "0") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "9.jpg" in err and err.count("\n") == 1
    assert _run(broken, tmp_path / "r2", "--epochs", "1", "--workers", "0", "--skip-bad", "--batch-size", "2",
                "--devices", "1") == 0
    assert "skipped 1 unreadable images" in capsys.readouterr().out
    assert _run(photos, tmp_path / "r3", "--augment", "flip", "--workers", "0") == 1
    assert "--augment flip is for data on the devices" in capsys.readouterr().err


def _start_file(tmp_path, name, **kwargs):
    torch.manual_seed(2)
    module = torch_models.create(name, **kwargs)
    path = tmp_path / f"{name}.safetensors"
    jaxcnn.write_torch_safetensors({k: v.numpy() for k, v in module.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("name, frozen, size, kwargs", [
    pytest.param("cnn_bn_dropout", "conv", 32, {"input_size": 32, "dropout": 0.0}, marks=pytest.mark.slow),
    pytest.param("alexnet", "features", 64, {"dropout": 0.0}, marks=pytest.mark.slow),
])
def test_streamed_finetuning_equals_torchs(photos, tmp_path, name, frozen, size, kwargs):
    """From a 10-class (AlexNet: torchvision's 1000-class) file: the head replaced by a fresh 3-class one, `frozen`
    frozen, the same images in the same order without augmentation, torch's ImageFolder-style loop beside the
    streamed trainer, in float64; the frozen parameters equal the file's bit for bit afterwards."""
    start = _start_file(tmp_path, name, **{k: v for k, v in kwargs.items() if k != "input_size"},
                        **({"input_size": kwargs["input_size"]} if "input_size" in kwargs else {}))
    stream = FolderData.scan(photos, size, workers=0).subset(16)
    settings = fit.Settings(model=name, dataset="folder", batch_size=4, lr=1e-4, lr_head=1e-3, optimizer="adam",
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), weights=str(start),
                            freeze=(frozen,))
    report = compare_trainer_epoch(settings, stream, lambda dtype: FolderImages(stream.train, size, settings.mean,
                                                                                settings.std, dtype),
                                   double=True, dropout=0.0)
    assert len(report.losses) == 4
    assert max(report.relative.values()) <= 1e-9, report.relative
    model, _ = fit.build_model(name, "torch", (size, size, 3), len(CLASSES))
    after, given = jaxcnn.torch_state_dict(model, report.variables), jaxcnn.read_torch_safetensors(start)
    head = finetune.head_prefix(model) + ".weight"
    assert after[head].shape[0] == len(CLASSES) and given[head].shape[0] == (1000 if name == "alexnet" else 10)
    for key in after:
        if key.startswith(frozen + ".") and not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(after[key], given[key].astype(after[key].dtype))
