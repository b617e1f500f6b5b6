"""python -m parity.bench: training and inference throughput, Flax (the trainer's loop) beside the torch
originals trained as the notebooks train them, in one process, torch on the device JAX uses (CUDA when JAX
runs on a GPU). Rows: notebook 002's and 004's MNIST networks on MNIST, notebook 003's sun_regressor (batch 32,
256x256x3) on its image folder and cifar_conv_mlp on CIFAR-10 (--sun-dir, --cifar-dir; generated in their
formats where not given: throughput does not depend on the pixels).

Rows: Flax, torch eager and torch.compile with the data already on the device (cudnn.benchmark on), images/s
as medians of --repeats runs (warm-up and compilation excluded; compile seconds reported apart) and the ratios
Flax/torch; then seconds per epoch, with the notebooks' own loops: notebook 002's (data on the host, each batch
moved) and notebook 004's (DataLoader + ToTensor + Normalize; CIFAR-10's records the same way), notebook 003's
(its Dataset of image files + DataLoader); then the time to 99% test accuracy, and the trainer's NNX step beside
its linen step (parity.bench.nnx_step). The JSON names the device and the versions. --quick runs few steps (a
smoke test, not a measurement).
"""

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import torch

from jaxcnn.preprocess import PREPROCESS
from parity.bench import finetune, nnx_step
from parity.bench.time_to_accuracy import (FAST_RECIPE, notebook_recipe, one_epoch_99, recipe_run,  # noqa: F401
                                     time_to_accuracy)
from parity.originals import notebook_loops, torch_models
from train.data import cifar10 as cifar10_data, mnist, sun as sun_data
from train.data.dataset import DataError, Dataset
from train.trainer import recipes
from train.trainer.step import epoch_order, eval_chunk, variables_of
from train.trainer.timing import median_seconds

BENCH_MODELS = ("lenet5_mnist", "mnist_cnn")
COURSE_MODELS = {"sun_regressor": "sun", "cifar_conv_mlp": "cifar10"}  # each with the data set of its row


def _median_rate(run, images_per_run: int, repeats: int) -> float:
    return images_per_run / median_seconds(run, repeats)


def _infer_batch(dataset: Dataset) -> int:
    return eval_chunk(len(dataset.test_labels), dataset.image_shape)  # 1000 MNIST images, 85 of the sun's


def flax_rates(name: str, dataset: Dataset, steps: int, repeats: int, infer_batch: int | None = None,
               micro_batches: int | None = None) -> dict:
    recipe = notebook_recipe(name, dataset.name)
    infer_batch = infer_batch or _infer_batch(dataset)
    run = recipe_run(recipe, dataset, micro_batches)
    model, trainer = run.model, run.trainer
    images, labels = trainer.put_replicated((dataset.train_images, dataset.train_labels))
    state, key = trainer.init_state(0)
    compile_seconds = sum(trainer.compile(state, images, labels, key, recipe["batch_size"]).values())
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])[:steps]

    def train():
        nonlocal state
        state, losses = trainer.train_steps(state, images, labels, order, key)
        jax.block_until_ready(losses[-1])

    train()  # warm-up
    train_rate = _median_rate(train, steps * recipe["batch_size"], repeats)
    prep = PREPROCESS[recipe["preprocess"]]
    infer = jax.jit(lambda v, x: model.apply(v, prep(x)).argmax(-1))
    variables = variables_of(state)  # after training: steps donate state
    test = jax.device_put(dataset.test_images[:infer_batch])
    jax.block_until_ready(infer(variables, test))
    return {"flax_train_images_per_s": train_rate,
            "flax_infer_images_per_s": _median_rate(lambda: jax.block_until_ready(infer(variables, test)),
                                                    infer_batch, repeats),
            "flax_compile_seconds": compile_seconds}


def torch_rates(name: str, dataset: Dataset, steps: int, repeats: int, device,
                infer_batch: int | None = None, compiled: bool = False) -> dict:
    """The notebooks' step (zero_grad, forward, CrossEntropyLoss or MSELoss, backward, Adam step) on tensors
    already on `device` (a torch.device; cudnn.benchmark on for CUDA), and inference on one batch there."""
    torch.backends.cudnn.benchmark = True
    recipe = recipes.for_model(name, dataset.name)
    infer_batch = infer_batch or _infer_batch(dataset)
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])[:steps]
    start = time.perf_counter()
    train = notebook_loops.tensor_loop(name, dataset.train_images, dataset.train_labels, recipe["preprocess"],
                                       recipe["lr"], recipe["batch_size"], device, compiled=compiled,
                                       weight_decay=recipe.get("weight_decay", 0.0))
    train(order)  # warm-up (and compilation, for torch.compile)
    warm_up_seconds = time.perf_counter() - start
    prefix = "torch_compile" if compiled else "torch_eager"
    rates = {f"{prefix}_train_images_per_s": _median_rate(
        lambda: notebook_loops.timed_steps(train, order, device), steps * recipe["batch_size"], repeats)}
    if compiled:
        rates["torch_compile_seconds"] = warm_up_seconds  # compilation and one run of the steps
        return rates
    module = torch_models.create(name).to(device).eval()
    test, _ = notebook_loops.host_tensors(dataset.test_images[:infer_batch], dataset.test_labels[:infer_batch],
                                          recipe["preprocess"])
    test = test.to(device)

    def infer():
        with torch.no_grad():
            module(test).argmax(1).cpu()

    infer()
    rates["torch_infer_images_per_s"] = _median_rate(infer, infer_batch, repeats)
    return rates


def notebook_epoch_seconds(name: str, dataset: Dataset, steps: int, device, torchvision: bool = False,
                           folder: str | None = None, warm_up: int = 10) -> dict:
    """Seconds per epoch of the notebooks' own loops, from `steps` timed steps after a warm-up of `warm_up`
    (the whole epoch when steps covers it): on MNIST notebook 002's (host tensors, each batch moved) and notebook
    004's (DataLoader, ToTensor, Normalize); on CIFAR-10 notebook 004's over its RGB records; on the sun data
    notebook 003's (its Dataset of the image files in `folder`, DataLoader(batch_size=32, shuffle=True))."""
    recipe = recipes.for_model(name, dataset.name)
    per_epoch = len(dataset.train_labels) // recipe["batch_size"]
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])
    timed = order[: min(steps, per_epoch)]
    args = (name, dataset.train_images, dataset.train_labels, recipe["preprocess"], recipe["lr"],
            recipe["batch_size"], device)
    decay = recipe.get("weight_decay", 0.0)
    if dataset.name == "sun":
        loops = {"notebook_003": notebook_loops.notebook_004_loop(
            *args, num_workers=0, dataset=notebook_loops.SunFiles(folder), weight_decay=decay)}
    elif dataset.name == "cifar10":
        loops = {"notebook_004": notebook_loops.notebook_004_loop(
            *args, dataset=notebook_loops.RgbImages(dataset.train_images, dataset.train_labels), weight_decay=decay)}
    else:
        loops = {"notebook_002": notebook_loops.notebook_002_loop(*args),
                 "notebook_004": notebook_loops.notebook_004_loop(*args, torchvision=torchvision)}
    result = {"notebook_loop_steps_timed": len(timed)}
    for label, run in loops.items():
        run(order[:warm_up])
        seconds = notebook_loops.timed_steps(run, timed, device)
        result[f"{label}_seconds_per_epoch"] = seconds * per_epoch / len(timed)
    return result


def model_row(name: str, dataset: Dataset, steps: int, repeats: int, device, with_compile: bool,
              micro_batches: int | None = None, notebook_steps: int = 300, torchvision: bool = False,
              folder: str | None = None) -> dict:
    """One model's row: Flax, torch eager (and torch.compile) images/s, their ratios, seconds per epoch, and the
    notebooks' own loops. Steps, notebook steps and warm-up shrink with the image size (sun: 1/250 of MNIST's)."""
    scale = max(1, int(np.prod(dataset.image_shape)) // 784)
    steps = max(min(5, steps), steps // scale)
    notebook_steps = notebook_steps and max(min(5, notebook_steps), notebook_steps // scale)
    row = flax_rates(name, dataset, steps, repeats, micro_batches=micro_batches) | torch_rates(
        name, dataset, steps, repeats, device)
    if with_compile:
        try:
            row |= torch_rates(name, dataset, steps, repeats, device, compiled=True)
        except Exception as err:  # torch.compile needs a working inductor toolchain
            row["torch_compile_train_images_per_s"] = None
            row["torch_compile_error"] = f"{type(err).__name__}: {err}"[:300]
    row["train_ratio_flax_over_torch_eager"] = row["flax_train_images_per_s"] / row["torch_eager_train_images_per_s"]
    row["infer_ratio_flax_over_torch"] = row["flax_infer_images_per_s"] / row["torch_infer_images_per_s"]
    batch = recipes.for_model(name, dataset.name)["batch_size"]
    epoch_images = len(dataset.train_labels) // batch * batch
    row["flax_seconds_per_epoch"] = epoch_images / row["flax_train_images_per_s"]
    row["torch_eager_seconds_per_epoch"] = epoch_images / row["torch_eager_train_images_per_s"]
    if notebook_steps:
        row |= notebook_epoch_seconds(name, dataset, notebook_steps, device, torchvision, folder,
                                      warm_up=max(2, 10 // scale))
    return row | {"dataset": dataset.name, "image_shape": list(dataset.image_shape), "batch_size": batch,
                  "steps_timed": steps}


def course_data(stack: contextlib.ExitStack, sun_dir: str | None = None, cifar_dir: str | None = None,
                sun_images: int = 256, cifar_images: int = 10_000) -> dict[str, tuple[Dataset, str | None]]:
    """{model: (data set, its folder)} of the sun and CIFAR-10 rows: the given folders, else generated in their
    formats (sun_data.make into a temporary folder that `stack` removes; CIFAR-10 records in memory)."""
    if not sun_dir:
        sun_dir = str(sun_data.make(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "sun",
                                    train=sun_images, test=32))
    if cifar_dir:
        cifar = cifar10_data.load(cifar_dir)
    else:
        rng = np.random.default_rng(0)
        cifar = Dataset("cifar10", rng.integers(0, 256, (cifar_images, 32, 32, 3), np.uint8),
                                 rng.integers(0, 10, cifar_images).astype(np.int32),
                                 rng.integers(0, 256, (1000, 32, 32, 3), np.uint8),
                                 rng.integers(0, 10, 1000).astype(np.int32), classes=cifar10_data.CLASSES)
    return {"sun_regressor": (sun_data.load(sun_dir), sun_dir), "cifar_conv_mlp": (cifar, None)}


def benchmark(dataset: Dataset, steps: int, repeats: int, with_compile: bool,
              micro_batches: int | None = None, time_to_99: bool = True, notebook_steps: int = 300,
              torchvision: bool = False, course: dict | None = None, nnx: bool = True) -> dict:
    """Every row of the side-by-side comparison, torch on the device JAX uses (see module docstring): the MNIST
    networks on `dataset`, and `course`'s {model: (data set, folder)} rows (course_data) beside them."""
    device = notebook_loops.torch_device(jax.default_backend())
    results = {}
    rows = [(name, dataset, None) for name in BENCH_MODELS] + [(n, d, f) for n, (d, f) in (course or {}).items()]
    for name, data, folder in rows:
        results[name] = model_row(name, data, steps, repeats, device, with_compile, micro_batches, notebook_steps,
                                  torchvision, folder)
    if time_to_99:
        results["one_epoch_99"] = one_epoch_99(dataset)
        results["time_to_99"] = time_to_accuracy(dataset, FAST_RECIPE)
        results["time_to_99_notebook_recipe"] = time_to_accuracy(dataset)
    if nnx:
        results["nnx_vs_linen"] = nnx_step.nnx_rows(dataset, BENCH_MODELS, steps, repeats)
    results["device"] = {"jax": str(jax.devices()[0]), "jax_platform": jax.default_backend(),
                         "torch": str(device), "name": notebook_loops.device_name(device),
                         "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    results["versions"] = {"python": platform.python_version(), "jax": jax.__version__,
                           "jaxlib": __import__("jaxlib").__version__, "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "flax": __import__("flax").__version__, "optax": __import__("optax").__version__}
    return results


def print_tables(results: dict) -> None:
    rows = [name for name in (*BENCH_MODELS, *COURSE_MODELS) if name in results]
    print(f"{'model':14s} {'':6s} {'flax img/s':>12s} {'torch eager':>12s} {'torch.compile':>14s} {'flax/eager':>11s}")
    for name in rows:
        r = results[name]
        compiled = r.get("torch_compile_train_images_per_s")
        compiled = "-" if compiled is None else f"{compiled:.0f}"
        print(f"{name:14s} {'train':6s} {r['flax_train_images_per_s']:12.1f} {r['torch_eager_train_images_per_s']:12.1f} "
              f"{compiled:>14s} {r['train_ratio_flax_over_torch_eager']:10.2f}x")
        print(f"{name:14s} {'infer':6s} {r['flax_infer_images_per_s']:12.1f} {r['torch_infer_images_per_s']:12.1f} "
              f"{'':>14s} {r['infer_ratio_flax_over_torch']:10.2f}x")
    loops = ("002", "003", "004")
    print(f"\nseconds per epoch {'flax':>8s} {'torch eager':>12s} " + " ".join(f"{'notebook ' + n:>13s}" for n in loops))
    for name in rows:
        r = results[name]
        epochs = [r.get(f"notebook_{n}_seconds_per_epoch") for n in loops]
        print(f"{name:17s} {r['flax_seconds_per_epoch']:8.2f} {r['torch_eager_seconds_per_epoch']:12.2f} "
              + " ".join("            -" if v is None else f"{v:13.2f}" for v in epochs))
    for key, label in (("time_to_99", "FAST_RECIPE"), ("time_to_99_notebook_recipe", "notebook recipe")):
        if key in results:
            t = results[key]
            print(f"time to {100 * t['target']:.0f}% test accuracy, {t['model']} ({label}): "
                  f"{t['train_seconds']:.1f} s in {t['epochs']} epochs (+ {t['compile_seconds']:.1f} s compile)"
                  f"{'' if t['reached'] else ' -- NOT reached'}; per epoch "
                  f"{[round(a, 4) for a in t['test_accuracy_per_epoch']]}")
    if "nnx_vs_linen" in results:
        nnx_step.print_rows(results["nnx_vs_linen"])
    if "finetune" in results:
        print(f"\nfine-tuning (features frozen) {'loader':>10s} {'step':>8s} {'pipeline':>9s}   torch: {'loader':>7s} "
              f"{'step':>8s} {'pipeline':>9s} {'compiled':>9s}  (images/s)")
        for name, r in results["finetune"].items():
            compiled = r.get("torch_compile_pipeline_images_per_s")
            print(f"{name:30s} {r['flax_loader_images_per_s']:10.1f} {r['flax_step_images_per_s']:8.1f} "
                  f"{r['flax_pipeline_images_per_s']:9.1f}          {r['torch_loader_images_per_s']:7.1f} "
                  f"{r['torch_eager_step_images_per_s']:8.1f} {r['torch_eager_pipeline_images_per_s']:9.1f} "
                  f"{'-' if compiled is None else f'{compiled:9.1f}':>9s}")
    print(f"{results['device']}\n{results['versions']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench", description=__doc__)
    parser.add_argument("--data-dir", help=f"the four MNIST IDX .gz files (or ${mnist.DATA_DIR_ENV})")
    parser.add_argument("--sun-dir", help="notebook 003's folder for the sun_regressor row (default: 256 generated "
                                          "images, python -m train.sun make-data)")
    parser.add_argument("--cifar-dir", help="CIFAR-10's binary files for the cifar_conv_mlp row (default: random "
                                            "records in its format)")
    parser.add_argument("--mnist-only", action="store_true", help="only the MNIST rows")
    parser.add_argument("--steps", type=int, default=300, help="training steps per timed run (MNIST; scaled down "
                                                               "by image size for the other rows)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 steps, 2 repeats, no torch.compile, no time-to-99%%")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--micro-batches", type=int, help="gradient parts per step (default: train.trainer.step's choice)")
    parser.add_argument("--notebook-steps", type=int, default=300,
                        help="steps timed of each notebook loop, scaled to an epoch (0: skip those rows)")
    parser.add_argument("--no-time-to-99", dest="time_to_99", action="store_false", help="skip the MNIST trainings")
    parser.add_argument("--torchvision", action="store_true",
                        help="notebook 004's loop with torchvision's own ToTensor and Normalize (needs torchvision)")
    parser.add_argument("--finetune", nargs="*", default=(), metavar="MODEL",
                        help="fine-tuning rows (224x224 photos from a folder, features frozen): e.g. alexnet vgg16")
    parser.add_argument("--finetune-dir", help="an ImageFolder tree for those rows (default: generated JPEGs)")
    parser.add_argument("--finetune-batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes of the fine-tuning rows")
    parser.add_argument("--no-nnx", dest="nnx", action="store_false", help="skip the NNX-vs-linen step rows")
    parser.add_argument("--nnx-only", action="store_true", help="only the NNX-vs-linen step rows (MNIST networks)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    with contextlib.ExitStack() as stack:
        try:
            dataset = mnist.load("mnist", args.data_dir)
            course = None if args.mnist_only or args.nnx_only else course_data(stack, args.sun_dir, args.cifar_dir)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if args.nnx_only:
            results = {"nnx_vs_linen": nnx_step.nnx_rows(dataset, BENCH_MODELS, steps, repeats)}
            nnx_step.print_rows(results["nnx_vs_linen"])
            _write_json(results, args.json)
            return 0
        results = benchmark(dataset, steps, repeats, args.compile and not args.quick, args.micro_batches,
                            time_to_99=args.time_to_99 and not args.quick,
                            notebook_steps=10 if args.quick else args.notebook_steps, torchvision=args.torchvision,
                            course=course, nnx=args.nnx)
    if args.finetune:
        results["finetune"] = finetune.finetune_rows(
            args.finetune, args.finetune_batch, steps=2 if args.quick else 5, repeats=1 if args.quick else 3,
            folder=args.finetune_dir, with_compile=args.compile and not args.quick, workers=args.workers)
    print_tables(results)
    _write_json(results, args.json)
    return 0


def _write_json(results: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(results, f, indent=2)

