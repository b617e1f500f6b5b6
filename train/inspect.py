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
import sys
from pathlib import Path

from jaxcnn.files import error_line
from train.data import sources
from train.data.dataset import DataError
from train.data.mnist import DATA_DIR_ENV
from train.inspection.photo import OCCLUSION_SIZE, OCCLUSION_STRIDE, inspect_photo
from train.inspection.pictures import inspect
from train.inspection.trained import InspectError, load_trained
from train.trainer.fit import TrainingError


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
                                      f"${DATA_DIR_ENV}, else TFDS)")
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
    except (InspectError, TrainingError, DataError, ValueError, OSError) as err:
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
