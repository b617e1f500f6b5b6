"""train.data.sun: notebook 003's folder layout read as a Dataset, its errors, and the generator `make`."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from train.data import sun as sun_data
from train.data.dataset import DataError


def write_split(folder, images: dict, targets: dict | None = None):
    """Writes each {name: uint8 array or PIL image} into `folder` and a format.json of `targets` (default [1, 2])."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(folder / name)
    targets = targets if targets is not None else {name: [1, 2] for name in images}
    (folder / "format.json").write_text(json.dumps(targets))


def index(folder):
    return json.loads((folder / "format.json").read_text())


@pytest.fixture
def small(tmp_path):
    """A made data set of 6 train and 4 test 32x32 images."""
    return sun_data.make(tmp_path / "sun", 6, 4, seed=0, size=32)


def test_make_then_load_round_trip(tmp_path):
    out = sun_data.make(tmp_path / "sun", 24, 8, seed=1, size=64)
    assert out == tmp_path / "sun"
    names = sorted(p.name for p in (out / "train").iterdir())
    assert names == [f"{i:05d}.png" for i in range(24)] + ["format.json"]  # no temporary files left
    dataset = sun_data.load(out)
    assert dataset.name == "sun" and dataset.classes is None and dataset.regression and dataset.num_outputs == 2
    assert dataset.train_images.shape == (24, 64, 64, 3) and dataset.test_images.shape == (8, 64, 64, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.float32
    assert dataset.train_labels.shape == (24, 2) and dataset.test_labels.shape == (8, 2)
    for split in ("train", "test"):
        entries = index(out / split)
        assert list(entries) == [f"{i:05d}.png" for i in range(len(entries))]
        targets = getattr(dataset, f"{split}_labels")
        np.testing.assert_array_equal(targets, np.array(list(entries.values()), np.float32))
        for image, (x, y) in zip(getattr(dataset, f"{split}_images"), targets):
            assert 0 < x < 63 and 0 < y < 63
            pixel = image[round(float(y)), round(float(x))].astype(int)  # row y, column x
            brightness = image.astype(int).sum(-1)
            assert pixel[0] == 255 and pixel.sum() == brightness.max() > brightness[0, 0] + 80
            rows, cols = np.nonzero(image[..., 0] == 255)  # the disc's interior: the sky's red stays below 200
            assert abs(cols.mean() - x) < 0.5 and abs(rows.mean() - y) < 0.5


def test_make_is_deterministic_in_seed(tmp_path):
    a, b, c = (sun_data.make(tmp_path / name, 5, 3, seed=seed, size=32) for name, seed in
               (("a", 7), ("b", 7), ("c", 8)))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert index(a / "train") != index(c / "train") and index(a / "test") != index(c / "test")
    assert (a / "train" / "00000.png").read_bytes() != (c / "train" / "00000.png").read_bytes()
    assert index(a / "train") != index(a / "test")


def test_images_of_any_format_become_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    ramp = np.stack(np.broadcast_arrays(*np.ogrid[0:8, 0:8], 4), -1).astype(np.uint8) * 30  # JPEG keeps it closely
    write_split(tmp_path / "train", {"a.jpg": ramp, "b.png": grey, "c.png": rgba, "d.bmp": rgb, "e.gif": palette},
                {"a.jpg": [1, 2], "b.png": [3.5, 4], "c.png": [5, 6], "d.bmp": [7, 8], "e.gif": [0, 0]})
    write_split(tmp_path / "test", {"f.tiff": rgb, "g.webp": grey}, {"g.webp": [9, 9], "f.tiff": [1, 2]})
    dataset = sun_data.load(tmp_path)
    assert dataset.train_images.shape == (5, 8, 8, 3) and dataset.test_images.shape == (2, 8, 8, 3)
    a, b, c, d, e = dataset.train_images
    assert np.abs(a.astype(int) - ramp).mean() < 10  # lossy JPEG
    np.testing.assert_array_equal(b, np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(c, rgba[..., :3])
    np.testing.assert_array_equal(d, rgb)
    np.testing.assert_array_equal(e, np.asarray(palette.convert("RGB")))
    np.testing.assert_array_equal(dataset.test_images[1], rgb)  # format.json's order, not the names'
    assert np.abs(dataset.test_images[0].astype(int) - grey[..., None]).mean() < 30  # lossy WebP
    np.testing.assert_array_equal(dataset.test_labels, [[9, 9], [1, 2]])
    np.testing.assert_array_equal(dataset.train_labels, [[1, 2], [3.5, 4], [5, 6], [7, 8], [0, 0]])


def test_missing_folders_and_format_json(tmp_path, small):
    layout = re.escape("DIR/train/format.json and DIR/test/format.json")
    with pytest.raises(DataError, match=f"nowhere is not a folder: .*{layout}"):
        sun_data.load(tmp_path / "nowhere")
    (small / "test" / "format.json").unlink()
    with pytest.raises(DataError, match=f"test has no format.json: .*{layout}"):
        sun_data.load(small)
    for path in (small / "test").iterdir():
        path.unlink()
    (small / "test").rmdir()
    with pytest.raises(DataError, match=f"{re.escape(str(small / 'test'))} is not a folder: .*{layout}"):
        sun_data.load(small)


@pytest.mark.parametrize("text, match", [
    ("{not json", r"train/format.json is not valid JSON \(Expecting"),
    ('[["00000.png", [1, 2]]]', r"train/format.json holds a JSON list, not an object"),
    ("{}", r"train/format.json lists no images"),
])
def test_bad_format_json(small, text, match):
    (small / "train" / "format.json").write_text(text)
    with pytest.raises(DataError, match=match):
        sun_data.load(small)


@pytest.mark.parametrize("value", [[1], [1, 2, 3], ["1", 2], [True, 2], [None, 2], {"x": 1, "y": 2}, 5,
                                   [float("nan"), 1], [1, float("inf")]])
def test_bad_target(small, value):
    entries = index(small / "test")
    entries["00002.png"] = value
    (small / "test" / "format.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=re.escape(f"test/format.json: the target of 00002.png is "
                                                       f"{json.dumps(value)}, not two finite numbers [x, y]")):
        sun_data.load(small)


def test_missing_and_unreadable_images(small):
    (small / "train" / "00003.png").unlink()
    with pytest.raises(DataError, match=r"train/format.json lists 00003.png, which is not in .*train$"):
        sun_data.load(small)
    (small / "train" / "00003.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"train/00003.png: PIL cannot open it \(UnidentifiedImageError: "
                                             r"cannot identify image file"):
        sun_data.load(small)
    whole = (small / "train" / "00004.png").read_bytes()
    (small / "train" / "00003.png").write_bytes(whole[:len(whole) // 2])  # truncated
    with pytest.raises(DataError, match=r"train/00003.png: PIL cannot open it \(OSError: .*truncated"):
        sun_data.load(small)
    (small / "test" / "00000.png").write_bytes(b"")  # the first file, read before the others
    (small / "train" / "00003.png").write_bytes(whole)
    with pytest.raises(DataError, match=r"test/00000.png: PIL cannot open it"):
        sun_data.load(small)


def test_images_of_different_sizes(tmp_path, small):
    Image.new("RGB", (16, 16)).save(small / "train" / "00002.png")
    Image.new("RGB", (8, 4)).save(small / "train" / "00005.png")
    with pytest.raises(DataError, match=r"train: 00000.png is 32x32 but 00002.png is 16x16 \(width x height\)"):
        sun_data.load(small)
    Image.new("RGB", (32, 32)).save(small / "train" / "00002.png")
    with pytest.raises(DataError, match=r"train: 00000.png is 32x32 but 00005.png is 8x4"):
        sun_data.load(small)
    Image.new("RGB", (32, 32)).save(small / "train" / "00005.png")
    assert len(sun_data.load(small).train_images) == 6
    other = sun_data.make(tmp_path / "other", 2, 2, size=16)  # the splits disagree: Dataset says so
    (small / "test").rename(tmp_path / "spare")
    (other / "test").rename(small / "test")
    with pytest.raises(DataError, match=r"sun: train images are \(32, 32, 3\) .* but test images \(16, 16, 3\)"):
        sun_data.load(small)


def test_make_refuses_an_existing_data_set_and_tiny_images(small, tmp_path):
    before = (small / "test" / "format.json").read_bytes()
    with pytest.raises(DataError, match=f"{re.escape(str(small))} already holds a data set .*format.json exists"):
        sun_data.make(small, 3, 3, seed=5, size=32)
    assert (small / "test" / "format.json").read_bytes() == before
    for kwargs in (dict(size=4), dict(train=0), dict(test=0), dict(seed=-1)):
        with pytest.raises(DataError, match="make needs size >= 8, train and test >= 1 and seed >= 0"):
            sun_data.make(tmp_path / "bad", **{"train": 2, "test": 2, "size": 16, **kwargs})
    assert not (tmp_path / "bad").exists()


def test_interrupted_make_leaves_no_format_json(tmp_path, monkeypatch):
    render = sun_data.render

    def failing(rng, size):
        failing.calls += 1
        if failing.calls == 4:
            raise OSError(28, "No space left on device")
        return render(rng, size)

    failing.calls = 0
    monkeypatch.setattr(sun_data, "render", failing)
    with pytest.raises(OSError, match="No space left"):
        sun_data.make(tmp_path / "sun", 6, 2, size=16)
    assert not (tmp_path / "sun" / "train" / "format.json").exists() and not (tmp_path / "sun" / "test").exists()
    monkeypatch.setattr(sun_data, "render", render)
    sun_data.make(tmp_path / "sun", 6, 2, size=16)  # a rerun completes it
    assert len(sun_data.load(tmp_path / "sun").train_images) == 6


def test_make_data_main(tmp_path, capsys):
    out = tmp_path / "sun"
    assert sun_data.make_data_main(["--out", str(out), "--train", "5", "--test", "3", "--size", "16",
                                    "--seed", "2"]) == 0
    printed = capsys.readouterr()
    assert "wrote 5 train and 3 test images (16x16" in printed.out and str(out) in printed.out and not printed.err
    dataset = sun_data.load(out)
    assert dataset.train_images.shape == (5, 16, 16, 3) and dataset.test_images.shape == (3, 16, 16, 3)
    assert sun_data.make_data_main(["--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert not printed.out and printed.err.count("\n") == 1
    assert printed.err.startswith("error: ") and "already holds a data set" in printed.err
    (tmp_path / "file").write_text("")
    assert sun_data.make_data_main(["--out", str(tmp_path / "file" / "sun"), "--train", "1", "--test", "1"]) == 1
    printed = capsys.readouterr()
    assert printed.err.startswith("error: Not a directory") and printed.err.count("\n") == 1
    for bad, message in ((["--train", "0"], "--train: 0 is not positive"), (["--size", "x"], "'x' is not an integer"),
                         (["--size", "4"], "--size: 4 is not >= 8"), (["--seed", "-1"], "--seed: -1 is not >= 0")):
        with pytest.raises(SystemExit) as exit:
            sun_data.make_data_main(["--out", str(tmp_path / "new"), *bad])
        assert exit.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sun_data.make_data_main([])
    assert "--out" in capsys.readouterr().err and not (tmp_path / "new").exists()
