"""Notebook 004's look inside a pretrained network: its first-layer filters and, for a photo, its top classes,
gradient saliency, guided backprop and occlusion (`python -m train.inspect --weights FILE [--image PHOTO]`)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import inspect as tools
from jaxcnn.imagenet import open_photo, top_k
from jaxcnn.pretrained import About, load_pretrained
from train.inspection import figures

# Occlusion on a 224x224 photo: a 32x32 patch every 16 pixels is 169 forwards (a 7x7 patch at stride 1, MNIST's
# default, would be 47,524).
OCCLUSION_SIZE, OCCLUSION_STRIDE = 32, 16


def filter_grid(model, variables, out: Path, name: str) -> tuple[str, str]:
    """The first conv layer's filters, one colour image each, 8 to a row with 2 pixels between them as
    torchvision.utils.make_grid lays them out (each filter min-max scaled to show its pattern)."""
    first = tools.conv_layers(model)[0]
    tree = variables["params"]
    for part in first.split("/"):
        tree = tree[part]
    kernel = np.asarray(tree["kernel"])  # (kh, kw, in, out)
    figures.grid_figure(tools.filter_images(kernel), out / "filters.png",
                        f"{name}: the {kernel.shape[-1]} filters of {first} ({kernel.shape[0]}x{kernel.shape[1]}"
                        f"x{kernel.shape[2]})", nrow=8, padding=2)
    return "filters.png", f"the {kernel.shape[-1]} filters of the first conv layer ({first}), 8 per row"


def inspect_photo(weights: str | Path, out: str | Path, photo: str | Path | None = None, model_name: str | None = None,
                  target: int | None = None, top: int = 5, occlusion_size: int = OCCLUSION_SIZE,
                  occlusion_stride: int = OCCLUSION_STRIDE) -> tuple[list[tuple[str, str]], list]:
    """Writes filters.png (and, with a photo, saliency.png, guided_backprop.png, occlusion.png) and index.md.

    Returns ([(file, what it shows)], [(class index, name, probability)] of the top classes, [] without a photo).
    """
    out = Path(out)
    model, variables, about = load_pretrained(weights, model_name)
    name = about.model or model_name
    image = open_photo(photo) if photo is not None else None  # a bad photo fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    written = [filter_grid(model, variables, out, name)]
    predictions = []
    if image is not None:
        written_photo, predictions = _explain(model, variables, about, image, Path(photo).name, out, name, target,
                                              top, occlusion_size, occlusion_stride)
        written += written_photo
    lines = [f"# {name}: {Path(weights).name}", ""]
    if predictions:
        lines += [f"top {len(predictions)} for {Path(photo).name}:", "",
                  *[f"{rank}. {label} (class {index}): P = {p:.3f}"
                    for rank, (index, label, p) in enumerate(predictions, 1)], ""]
    lines += ["| file | what it shows |", "| --- | --- |", *[f"| [{f}]({f}) | {what} |" for f, what in written]]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return written, predictions


def _explain(model, variables, about: About, image, photo_name: str, out: Path, name: str, target: int | None,
             top: int, occlusion_size: int, occlusion_stride: int):
    if about.preprocessing is None:
        raise ValueError("the weights file records no preprocessing for photos; write it with "
                         "`python -m parity pretrained` (ImageNet's resize 256, crop 224, mean/std)")
    pixels = about.preprocessing.resized_and_cropped(image)  # (224, 224, 3) uint8: what is shown
    x = jnp.asarray(about.preprocessing.normalize(pixels))  # what the network sees
    logits = np.asarray(model.apply(variables, x[None])[0])
    predictions = top_k(logits, about.classes, top)
    target = predictions[0][0] if target is None else target
    if not 0 <= target < logits.size:
        raise ValueError(f"--class {target} is not one of the model's classes 0..{logits.size - 1}")
    label = about.classes[target] if about.classes else str(target)
    shown = pixels.astype(np.float32) / 255.0
    about_line = f"{name}, {photo_name}, class {target} ({label})"

    saliency = tools.gradient_saliency(model, variables, x[None], jnp.array([target]))[0]
    figures.maps_figure(shown, [("max_c |d score / d pixel|", saliency, "hot")], out / "saliency.png",
                        f"gradient saliency: {about_line}")
    guided = np.asarray(tools.guided_backprop(model, variables, x[None], jnp.array([target]))[0])
    figures.maps_figure(shown, [("guided backprop", guided, "seismic"),
                                ("positive part", np.maximum(guided, 0), "hot")], out / "guided_backprop.png",
                        f"guided backprop: {about_line}")
    occluded = np.asarray(jax.device_get(tools.occlusion(model, variables, x, target, occlusion_size,
                                                         occlusion_stride, 0.0, batch_size=16)))
    extent = figures.occlusion_extent(occlusion_size, occlusion_stride, occluded.shape)
    probability = float(np.exp(logits[target] - logits.max()) / np.exp(logits - logits.max()).sum())
    figures.maps_figure(shown, [(f"P({label}), {occlusion_size}x{occlusion_size} patch", occluded, "viridis",
                                 extent)], out / "occlusion.png", f"occlusion: {about_line}, P = {probability:.3f}")
    return [("saliency.png", f"gradient saliency for {label}: max over channels of \\|d score / d pixel\\|"),
            ("guided_backprop.png", f"guided backprop for {label} (red: positive)"),
            ("occlusion.png", f"P({label}) with a {occlusion_size}x{occlusion_size} patch of the mean colour "
                              f"every {occlusion_stride} pixels (lowest: what the decision rests on)")], predictions
