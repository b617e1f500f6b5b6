"""train.data.folder (ImageFolder trees scanned as torchvision does, split, checked) and train.data.pipeline (grain
loaders: order, shards, workers, torchvision's train and eval transforms)."""

import pickle
import re

import numpy as np
import pytest
from PIL import Image

from train.data import folder as folder_data, pipeline
from train.data.dataset import DataError

SIZE = 16
FORMATS = (("jpg", "RGB"), ("png", "L"), ("webp", "RGB"), ("bmp", "RGB"), ("png", "RGBA"), ("jpeg", "L"))


def write_image(path, mode="RGB", size=(40, 30), seed=0):
    """A random `mode` image of `size` (W, H), in the format of `path`'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def write_class(folder, count, start=0):
    """`count` images of the FORMATS in turn, named 000.jpg, 001.png, ..."""
    return [write_image(folder / f"{i:03d}.{FORMATS[i % 6][0]}", FORMATS[i % 6][1], seed=i)
            for i in range(start, start + count)]


def gradient(height, width):
    """uint8 (H, W, 3): red = column, green = row, blue 0."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols, rows, np.zeros_like(rows)], -1).astype(np.uint8)


@pytest.fixture
def tree(tmp_path):
    """DIR/train and DIR/val with the classes b, a, C, 10, 9 (a with a sub-folder) and non-image files."""
    for split, count in (("train", 5), ("val", 2)):
        for name in ("b", "a", "C", "10", "9"):
            write_class(tmp_path / split / name, count)
        write_image(tmp_path / split / "a" / "sub" / "000.JPG")
        (tmp_path / split / "a" / "notes.txt").write_text("not an image")
        write_image(tmp_path / split / "b" / "anim.gif")
    return tmp_path


@pytest.fixture
def records(tmp_path):
    """26 labelled images of different sizes (the last 2 of 8-image batches are a partial batch)."""
    return [(write_image(tmp_path / f"{i:02d}.png", size=(30 + i, 50 - i), seed=i), i % 3) for i in range(26)]


def test_classes_labels_and_files_are_torchvisions(tree):
    found = folder_data.scan(tree)
    assert found.classes == ("10", "9", "C", "a", "b") and found.skipped == []
    expected = {name: [tree / "train" / name / f"{i:03d}.{FORMATS[i][0]}" for i in range(5)]
                for name in found.classes}
    expected["a"].append(tree / "train" / "a" / "sub" / "000.JPG")  # after a's own files, as os.walk goes
    assert found.train == [(path, label) for label, name in enumerate(found.classes) for path in expected[name]]
    assert [label for _, label in found.val] == [0] * 2 + [1] * 2 + [2] * 2 + [3] * 3 + [4] * 2


def test_decode_gives_rgb_of_every_format(tmp_path):
    for i, (suffix, mode) in enumerate(FORMATS):
        image = pipeline.decode(write_image(tmp_path / f"x{i}.{suffix}", mode))
        assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    rgba = write_image(tmp_path / "y.png", "RGBA")
    assert np.array_equal(pipeline.decode(rgba), np.asarray(Image.open(rgba))[..., :3])


def test_val_fraction_split_is_stratified_seeded_and_complete(tmp_path):
    files = {name: write_class(tmp_path / name, count) for name, count in (("cat", 10), ("dog", 5), ("eel", 2))}
    first = folder_data.scan(tmp_path, val_fraction=0.3, seed=0)
    assert first.classes == ("cat", "dog", "eel")
    assert first == folder_data.scan(tmp_path, val_fraction=0.3, seed=0)
    other = folder_data.scan(tmp_path, val_fraction=0.3, seed=1)
    assert other.val != first.val
    for split in (first, other):
        for label, name in enumerate(split.classes):
            train = [p for p, y in split.train if y == label]
            val = [p for p, y in split.val if y == label]
            assert len(val) == {"cat": 3, "dog": 2, "eel": 1}[name]
            assert sorted(train + val) == files[name] and not set(train) & set(val)
            assert train == sorted(train) and val == sorted(val)


@pytest.mark.parametrize("folder, val_fraction, match", [
    ("nowhere", None, "does not exist.*expected DIR/train/<class>"),
    ("flat", None, "no train/ and val/.*class folders \\(one, two\\) directly: give --val-fraction"),
    ("half", None, "has no val/: expected DIR/train/<class>/\\* and DIR/val/<class>"),
    ("half", 0.5, "has a train/ folder, which --val-fraction would take for a class"),
    ("flat", 0.5, "class 'one' has 1 image \\(.*000.jpg\\): --val-fraction needs at least 2"),
    ("flat", 1.0, "--val-fraction must be between 0 and 1"),
    ("tree", 0.2, "has train/ and val/ folders: drop --val-fraction"),
])
def test_layout_errors(tmp_path, tree, folder, val_fraction, match):
    write_class(tmp_path / "flat" / "one", 1)
    write_class(tmp_path / "flat" / "two", 3)
    write_class(tmp_path / "half" / "train" / "cat", 2)
    with pytest.raises(DataError, match=match):
        folder_data.scan(tree if folder == "tree" else tmp_path / folder, val_fraction=val_fraction)


def test_class_errors(tmp_path):
    for split in ("train", "val"):
        write_class(tmp_path / split / "cat", 2)
    write_class(tmp_path / "train" / "dog", 2)
    with pytest.raises(DataError, match="class 'dog' is in .*train but missing from the val split"):
        folder_data.scan(tmp_path)
    (tmp_path / "val" / "dog").mkdir()
    (tmp_path / "val" / "dog" / "readme.txt").write_text("")
    with pytest.raises(DataError, match="class 'dog' of the val split .* has no images"):
        folder_data.scan(tmp_path)


def test_unreadable_images_raise_or_are_skipped(tmp_path):
    for split in ("train", "val"):
        write_class(tmp_path / split / "cat", 3)
        write_class(tmp_path / split / "dog", 2)
    garbage = tmp_path / "train" / "cat" / "zz.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    empty = tmp_path / "val" / "dog" / "empty.png"
    empty.write_bytes(b"")
    shown = f"{re.escape(str(garbage))} \\(cannot identify image file\\);"
    with pytest.raises(DataError, match=f"2 unreadable images in .*{shown}.*pass --skip-bad"):
        folder_data.scan(tmp_path)
    found = folder_data.scan(tmp_path, skip_bad=True)
    assert [path for path, _ in found.skipped] == [garbage, empty]
    assert [reason for _, reason in found.skipped] == ["cannot identify image file"] * 2
    assert len(found.train) == 5 and len(found.val) == 5
    for path in (tmp_path / "val" / "dog").glob("00*"):
        path.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="class 'dog' of the val split has no readable images"):
        folder_data.scan(tmp_path, skip_bad=True)


def test_a_cut_jpeg_passes_the_header_check_and_fails_when_decoded(tmp_path):
    for split in ("train", "val"):
        write_class(tmp_path / split / "cat", 2)
    cut = write_image(tmp_path / "train" / "cat" / "cut.jpg", size=(400, 300))
    cut.write_bytes(cut.read_bytes()[:2000])
    assert len(folder_data.scan(tmp_path).train) == 3
    with pytest.raises(DataError, match=f"{re.escape(str(cut))}.*(truncated|broken).*full_check=True"):
        pipeline.decode(cut)
    with pytest.raises(DataError, match=f"1 unreadable image in .*{re.escape(str(cut))} \\(.*truncated"):
        folder_data.scan(tmp_path, full_check=True)
    loader = pipeline.train_loader([(cut, 0)], SIZE, 1, seed=0, epoch=0, num_workers=0)
    with pytest.raises(DataError, match=re.escape(str(cut))):
        list(loader)


def test_train_loader_batches_are_the_same_with_workers_and_shards(records):
    one = list(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=1, num_workers=0))
    assert len(one) == len(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=1)) == 3
    assert {(images.shape, images.dtype, labels.shape, labels.dtype) for images, labels in one} == {
        ((8, SIZE, SIZE, 3), np.dtype(np.uint8), (8,), np.dtype(np.int32))}
    labels = np.concatenate([labels for _, labels in one])
    order = pipeline.epoch_order(26, 3, 1)
    assert labels.tolist() == [records[i][1] for i in order[:24]]
    image = pipeline.decode(records[order[9]][0])
    expected = pipeline.train_transform(image, SIZE, pipeline.example_rng(3, 1, order[9]))
    assert np.array_equal(one[1][0][1], expected)
    workers = list(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=1, num_workers=2))
    assert len(workers) == 3 and all(np.array_equal(a, b) for x, y in zip(one, workers) for a, b in zip(x, y))
    hosts = [list(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=1, num_workers=0, shard_index=k,
                                        shard_count=2)) for k in (0, 1)]
    for step, (images, labels) in enumerate(one):
        assert hosts[0][step][0].shape == (4, SIZE, SIZE, 3)
        assert np.array_equal(np.concatenate([hosts[0][step][0], hosts[1][step][0]]), images)
        assert np.array_equal(np.concatenate([hosts[0][step][1], hosts[1][step][1]]), labels)
    resumed = list(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=1, num_workers=0, first_batch=1))
    assert len(resumed) == 2 and all(np.array_equal(a[0], b[0]) for a, b in zip(one[1:], resumed))
    again = list(pipeline.train_loader(records, SIZE, 8, seed=3, epoch=2, num_workers=0))
    assert not np.array_equal(again[0][0], one[0][0])


def test_train_loader_arguments(records):
    with pytest.raises(ValueError, match="multiple of the 3 hosts"):
        pipeline.train_loader(records, SIZE, 8, seed=0, epoch=0, shard_count=3)
    with pytest.raises(ValueError, match="shard_index 2 is not in 0..1"):
        pipeline.train_loader(records, SIZE, 8, seed=0, epoch=0, shard_index=2, shard_count=2)
    with pytest.raises(DataError, match="no images"):
        pipeline.train_loader([], SIZE, 8, seed=0, epoch=0)
    example = pipeline.TrainExample(tuple((str(p), y) for p, y in records), SIZE, 0, 0, True)
    assert pickle.loads(pickle.dumps(example)) == example


class Highest:
    """A stand-in Generator whose every uniform draw is its upper bound and every integer its lower."""

    def uniform(self, low, high):
        return high

    def integers(self, low, high):
        return low


def fallback(height, width):
    """torchvision's window when no attempt fits: the central crop, its ratio clamped to [3/4, 4/3]."""
    h = min(height, round(width * 4 / 3) if width / height < 3 / 4 else height)
    w = min(width, round(height * 4 / 3))
    return (height - h) // 2, (width - w) // 2, h, w


def test_crop_params_follow_torchvision():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        height, width = rng.integers(8, 300, 2)
        top, left, h, w = pipeline.crop_params(height, width, rng)
        assert 0 <= top <= height - h and 0 <= left <= width - w and 0 < h and 0 < w
        slack = (w + h) / 2 + 0.25  # w and h are rounded
        drawn = (0.08 * height * width - slack <= h * w <= height * width
                 and 3 / 4 * (h - 0.5) - 0.5 <= w <= 4 / 3 * (h + 0.5) + 0.5)
        assert drawn or (top, left, h, w) == fallback(height, width)
    assert pipeline.crop_params(4, 400, np.random.default_rng(0)) == (0, (400 - 5) // 2, 4, 5)
    assert pipeline.crop_params(400, 4, np.random.default_rng(0)) == ((400 - 5) // 2, 0, 5, 4)
    assert pipeline.crop_params(60, 60, Highest()) == (0, 0, 60, 60)  # 10 attempts too wide: the whole image


def test_random_resized_crop_is_a_resized_window():
    image = gradient(150, 200)
    for seed in range(20):
        top, left, h, w = pipeline.crop_params(150, 200, np.random.default_rng(seed))
        out = pipeline.random_resized_crop(image, 32, np.random.default_rng(seed)).astype(float)
        assert out.shape == (32, 32, 3)
        centres = (np.arange(32) + 0.5) / 32
        inner = slice(3, -3)  # the bilinear filter's support reaches past the window's edges only near them
        assert np.allclose(out[inner, inner, 0], (left - 0.5 + centres * w)[None, inner], atol=1.0)
        assert np.allclose(out[inner, inner, 1], (top - 0.5 + centres * h)[inner, None], atol=1.0)


def test_flips_happen_about_half_the_time():
    image = gradient(8, 8)
    flipped = [pipeline.random_flip(image, np.random.default_rng(seed))[0, 0, 0] == 7 for seed in range(400)]
    assert 0.43 < np.mean(flipped) < 0.57
    rng = np.random.default_rng(5)
    pipeline.crop_params(8, 8, rng)
    mirrored = rng.random() < 0.5
    assert np.array_equal(pipeline.train_transform(image, 8, np.random.default_rng(5)),
                          pipeline.random_resized_crop(image, 8, np.random.default_rng(5))[:, ::-1 if mirrored else 1])


def test_eval_transform_resizes_the_shorter_side_then_crops_the_centre():
    image = gradient(50, 100)
    resized = pipeline.resize_shorter(image, int(32 * 256 / 224))
    assert resized.shape == (36, 72, 3)
    assert np.array_equal(resized, np.asarray(Image.fromarray(image).resize((72, 36), Image.Resampling.BILINEAR)))
    assert np.array_equal(pipeline.eval_transform(image, 32), resized[2:34, 20:52])
    assert pipeline.resize_shorter(gradient(120, 36), 36).shape == (120, 36, 3)


def test_eval_loader_gives_every_image_in_file_order(records):
    batches = list(pipeline.eval_loader(records, SIZE, 8, num_workers=0))
    assert [len(labels) for _, labels in batches] == [8, 8, 8, 2]
    images = np.concatenate([images for images, _ in batches])
    expected = np.stack([pipeline.eval_transform(pipeline.decode(path), SIZE) for path, _ in records])
    assert np.array_equal(images, expected)
    assert np.concatenate([labels for _, labels in batches]).tolist() == [label for _, label in records]
    hosts = [list(pipeline.eval_loader(records, SIZE, 8, num_workers=0, shard_index=k, shard_count=2)) for k in (0, 1)]
    assert [len(labels) for _, labels in hosts[1]] == [4, 4, 4, 0] and hosts[1][-1][0].shape == (0, SIZE, SIZE, 3)
    joined = np.concatenate([part[0] for step in zip(*hosts) for part in step])
    assert np.array_equal(joined, expected)
