"""Notebook 004's tools on a trained run, drawn on a test image of its own data set: filters, activation maps,
nearest neighbours, occlusion, gradient saliency, guided backprop and class models, with index.md."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import inspect as tools
from jaxcnn.preprocess import PREPROCESS
from train.data.dataset import Dataset
from train.inspection import figures
from train.inspection.trained import InspectError, Trained


def _batched(fn, images: np.ndarray, size: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(fn(images[i:i + size])) for i in range(0, len(images), size)])


def inspect(trained: Trained, dataset: Dataset, out: str | Path, image_index: int = 0,
            target: int | None = None, layer: str | None = None, neighbours: int = 8, occlusion_size: int = 7,
            occlusion_stride: int = 1, class_steps: int = 200) -> list[tuple[str, str]]:
    """Writes the PNGs and index.md into `out`; returns [(file name, what it shows)]."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, variables, name = trained.model, trained.variables, trained.config["model"]
    if not 0 <= image_index < len(dataset.test_labels):
        raise InspectError(f"--image-index {image_index} is outside the test set (0..{len(dataset.test_labels) - 1})")
    regression = dataset.regression
    if regression and target is not None:
        raise InspectError(f"--class: {name} is a regression (its outputs are not classes); leave --class out")
    preprocess = jax.jit(PREPROCESS[trained.config["preprocess"]])
    raw = dataset.test_images[image_index]
    label = _label_text(dataset.test_labels[image_index])
    target = int(dataset.test_labels[image_index]) if target is None and not regression else target
    if not regression and not 0 <= target < model.num_classes:
        raise InspectError(f"--class {target} is not one of the model's classes 0..{model.num_classes - 1}")
    image = preprocess(raw)
    low, high = (float(v) for v in preprocess(np.array([0, 255], np.uint8)))  # black and white, as the model sees them
    convs = tools.conv_layers(model)
    layer = layer or convs[0]
    outputs = model.apply(variables, image[None])[0]
    about = (f"{name} (epoch {trained.epoch}), test image {image_index} (target {label})" if regression else
             f"{name} (epoch {trained.epoch}), test image {image_index} (label {label}), class {target}")
    written = []

    def kernel(path: str) -> np.ndarray:
        tree = variables["params"]
        for part in path.split("/"):
            tree = tree[part]
        return np.asarray(tree["kernel"])

    figures.grid_figure(tools.filter_images(kernel(convs[0])), out / "filters.png",
                        f"{name}: the {kernel(convs[0]).shape[-1]} filters of {convs[0]}")
    written.append(("filters.png", f"the first conv layer's kernels ({convs[0]}), one image per filter"))
    if len(convs) > 1:
        later = kernel(convs[1])
        figures.grid_figure(tools.channel_filter_images(later[..., :16]), out / "filters_channels.png",
                            f"{convs[1]}: filters 0-15 (rows) by input channel (columns)", nrow=later.shape[2])
        written.append(("filters_channels.png", f"{convs[1]}'s kernels channel by channel (first 16 filters)"))

    maps = np.asarray(tools.activations(model, variables, image[None], layer))[0]
    figures.grid_figure(np.moveaxis(maps, -1, 0)[..., None], out / "activations.png",
                        f"{layer} activation maps: {about}")
    written.append(("activations.png", f"the {maps.shape[-1]} activation maps of {layer} for the test image"))

    bank = _batched(preprocess, dataset.test_images)
    embed = jax.jit(lambda x: tools.features(model, variables, x))
    embeddings = _batched(embed, bank)
    others = np.delete(np.arange(len(bank)), image_index)
    rows = []
    for space, vectors in (("feature space", embeddings), ("pixel space", bank)):
        found, _ = tools.nearest_neighbours(vectors[image_index], vectors[others], neighbours)
        found = others[np.asarray(found)]
        rows.append((space, np.concatenate([raw[None], dataset.test_images[found]]),
                     [f"query ({label})"] + [f"#{i} ({_label_text(dataset.test_labels[i])})" for i in found]))
    figures.rows_figure(rows, out / "neighbours.png", f"{neighbours} nearest test images (label): {about}")
    written.append(("neighbours.png", f"{neighbours} nearest neighbours in feature space (last hidden layer, "
                                      f"{embeddings.shape[1]} values) and in pixel space"))

    if regression:
        prediction = _label_text(np.asarray(outputs))
        return _write_index(out, about, f"predicted {prediction}", written + [
            ("", "occlusion, saliency, guided backprop and class models explain a class score: a classifier's")])

    probabilities = jax.nn.softmax(outputs)
    occluded = np.asarray(tools.occlusion(model, variables, image, target, occlusion_size, occlusion_stride, low))
    extent = figures.occlusion_extent(occlusion_size, occlusion_stride, occluded.shape)
    figures.maps_figure(raw, [(f"P(class {target}), {occlusion_size}x{occlusion_size} patch", occluded, "viridis",
                               extent)], out / "occlusion.png",
                        f"occlusion: {about}, P = {float(probabilities[target]):.3f}")
    written.append(("occlusion.png", f"P(class {target}) with a {occlusion_size}x{occlusion_size} patch of zero "
                                     f"pixels centred on each position (lowest: the pixels the decision rests on)"))

    saliency = tools.gradient_saliency(model, variables, image[None], jnp.array([target]))[0]
    figures.maps_figure(raw, [("max_c |d score / d pixel|", saliency, "hot")], out / "saliency.png",
                        f"gradient saliency: {about}")
    written.append(("saliency.png", "gradient saliency: max over channels of \\|d score_c / d image\\|"))

    guided = np.asarray(tools.guided_backprop(model, variables, image[None], jnp.array([target]))[0])
    figures.maps_figure(raw, [("guided backprop", guided, "seismic"),
                              ("positive part", np.maximum(guided, 0), "hot")], out / "guided_backprop.png",
                        f"guided backprop: {about}")
    written.append(("guided_backprop.png", "d score_c / d image through guided ReLUs (red: positive)"))

    span = high - low  # step and penalty in units of the input range, so raw 0..255 inputs behave like [-1, 1]
    classes = np.arange(model.num_classes)
    images = tools.class_models(model, variables, classes, tuple(image.shape), steps=class_steps,
                                learning_rate=0.1 * span ** 2, l2=1e-2 / span ** 2, blur_every=10, clip_every=10,
                                clip_fraction=0.1, value_range=(low, high))
    predicted = np.asarray(model.apply(variables, images).argmax(-1))
    titles = [f"{c}: seen as {p}" for c, p in zip(classes, predicted)]
    figures.rows_figure([("class model", np.asarray(images), titles)],
                        out / "class_models.png", f"{name}: gradient ascent on score_c - lambda ||I||^2, blur and "
                                                  f"clip every 10 of {class_steps} steps")
    written.append(("class_models.png", "for each class, the image found by gradient ascent on its score"))

    return _write_index(out, about, f"predicted {int(probabilities.argmax())} with P = "
                                    f"{float(probabilities.max()):.3f}", written)


def _label_text(label) -> str:
    """A class index as itself; a regression target (x, y) as '(x, y)' to one decimal."""
    label = np.asarray(label)
    return str(int(label)) if label.ndim == 0 else "(" + ", ".join(f"{v:.1f}" for v in label) + ")"


def _write_index(out: Path, about: str, predicted: str, written: list) -> list[tuple[str, str]]:
    """index.md: what was explained and a table of the pictures (a row without a file: a note, not drawn)."""
    drawn = [(f, what) for f, what in written if f]
    notes = [what for f, what in written if not f]
    lines = [f"# {about}", "", predicted, "", "| file | what it shows |", "| --- | --- |",
             *[f"| [{f}]({f}) | {what} |" for f, what in drawn], *(["", *[f"Not drawn: {n}." for n in notes]]
                                                                    if notes else [])]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return drawn
