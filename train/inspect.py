"""python -m train.inspect: pictures of what a network has learned (notebook 004's tools).

    python -m train.inspect --checkpoint runs/cnn --data-dir ../shared/data/mnist --out runs/cnn/inspect
    python -m train.inspect --weights alexnet.safetensors --image cat.jpg --out inspect/alexnet

--checkpoint: the newest checkpoint of a training run's --out directory (train.mnist, train.sun, train.cifar10),
explained on test image --image-index of the run's own data set (a regression, such as notebook 003's sun: its
filters, activations and neighbours; the class tools need a classifier).
--weights: a pretrained file (python -m parity pretrained): its first-layer filters; with --image PHOTO (JPEG or
PNG) also the top-5 classes, gradient saliency, guided backprop and occlusion for the top class.
Writes one PNG per tool and index.md listing them into --out.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import inspect as tools
from jaxcnn.files import error_line
from jaxcnn.preprocess import PREPROCESS
import jaxcnn
from train import data as data_lib
from train import figures, sources
from train.checkpoint import Checkpoints
from train.fit import Settings, TrainingError, build_model, optimizer_of
from train.inspect_photo import OCCLUSION_SIZE, OCCLUSION_STRIDE, inspect_photo
from train.step import init_state, variables_of

class InspectError(RuntimeError):
    """The checkpoint or the request cannot be inspected; the message says why."""


@dataclasses.dataclass
class Trained:
    model: object
    variables: dict
    config: dict
    epoch: int
    model_kwargs: dict = dataclasses.field(default_factory=dict)  # what the run built the registry model with


def load_trained(checkpoint: str | Path, model_name: str | None = None) -> Trained:
    """The newest checkpoint of a training run as a model (built as the run built it) and its variables."""
    out = Path(checkpoint)
    out = out.parent if out.name == "checkpoints" else out
    if not (out / "checkpoints").is_dir():
        raise InspectError(f"{out} holds no checkpoints/ directory (python -m train.mnist --out DIR writes one)")
    checkpoints = Checkpoints(out)
    try:
        epoch = checkpoints.latest()
        if epoch is None:
            raise InspectError(f"{out / 'checkpoints'} holds no finished checkpoint")
        config = checkpoints.meta(epoch)["config"]
        if model_name and model_name != config["model"]:
            raise InspectError(f"--model {model_name} but {out} was trained with --model {config['model']}")
        if "model_kwargs" in config:
            kwargs = config["model_kwargs"]
            model = jaxcnn.create_model(config["model"], weight_init=config["init"], **kwargs)
        else:  # a run from before checkpoints recorded them: train.mnist's 28x28x1, 10 classes
            model, kwargs = build_model(config["model"], config["init"])
        # the run's optimizer, for the structure of its state (a schedule's step count: its length is immaterial)
        settings = Settings(**{f.name: config[f.name] for f in dataclasses.fields(Settings) if f.name in config})
        tx, _ = optimizer_of(settings, model, 1)
        state, _ = checkpoints.restore(epoch, init_state(model, tx, jax.random.key(0)))
    finally:
        checkpoints.close()
    return Trained(model, variables_of(state), config, epoch, kwargs)


def _batched(fn, images: np.ndarray, size: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(fn(images[i:i + size])) for i in range(0, len(images), size)])


def inspect(trained: Trained, dataset: data_lib.Dataset, out: str | Path, image_index: int = 0,
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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a training run's --out directory")
    source.add_argument("--weights", help="a torch-keyed .safetensors (python -m parity pretrained NAME writes one)")
    p.add_argument("--model", help="the registry model (checked against the checkpoint or weights; default theirs)")
    p.add_argument("--image", help="with --weights: a photo (JPEG/PNG) to classify and explain")
    p.add_argument("--top", type=int, default=5, help="with --image: how many classes to print (default 5)")
    p.add_argument("--data-dir", help="the run's data (default: the --data-dir it trained on; MNIST: "
                                      f"${data_lib.DATA_DIR_ENV}, else TFDS)")
    p.add_argument("--tfds-dir", help="TFDS data_dir")
    p.add_argument("--out", required=True, help="where the PNGs and index.md go")
    p.add_argument("--image-index", type=int, default=0, help="the test image to explain (default 0)")
    p.add_argument("--class", dest="target", type=int, help="the class to explain (default: the image's label)")
    p.add_argument("--layer", help="the layer whose activation maps to draw (default: the first conv)")
    p.add_argument("--neighbours", type=int, default=8)
    p.add_argument("--occlusion-size", type=int, help=f"default 7 (MNIST), {OCCLUSION_SIZE} (a photo)")
    p.add_argument("--occlusion-stride", type=int, help=f"default 1 (MNIST), {OCCLUSION_STRIDE} (a photo)")
    p.add_argument("--class-steps", type=int, default=200, help="gradient-ascent steps per class-model image")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    if args.image and not args.weights:
        p.error("--image goes with --weights (a checkpoint's run is explained on test image --image-index)")
    return args


def _run(args) -> list[tuple[str, str]]:
    if args.weights:
        written, predictions = inspect_photo(args.weights, args.out, args.image, args.model, args.target, args.top,
                                             args.occlusion_size or OCCLUSION_SIZE,
                                             args.occlusion_stride or OCCLUSION_STRIDE)
        for rank, (index, label, probability) in enumerate(predictions, 1):
            print(f"{rank}. {label} (class {index}): P = {probability:.3f}")
        return written
    trained = load_trained(args.checkpoint, args.model)
    if trained.config["dataset"] not in sources.NAMES:
        raise InspectError(f"{args.checkpoint} trained on a {trained.config['dataset']} streamed from disk: "
                           "export it (the run's --export-torch, or python -m parity convert --model NAME RUN "
                           "FILE.safetensors) and explain a photo with --weights FILE --image PHOTO")
    dataset = sources.load(trained.config["dataset"], args.data_dir or trained.config.get("data_dir"),
                           args.tfds_dir)
    return inspect(trained, dataset, args.out, args.image_index, args.target, args.layer, args.neighbours,
                   args.occlusion_size or 7, args.occlusion_stride or 1, args.class_steps)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        written = _run(args)
    except (InspectError, TrainingError, data_lib.DataError, ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 1
    for file, what in written:
        print(f"{Path(args.out) / file}: {what}")
    print(f"index: {Path(args.out) / 'index.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
