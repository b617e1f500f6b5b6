"""python -m parity.bench: training and inference throughput, Flax (the train.mnist loop) beside the torch
originals trained as the notebooks train them, in one process, torch on the device JAX uses (CUDA when JAX
runs on a GPU).

Rows: Flax, torch eager and torch.compile with the data already on the device (cudnn.benchmark on), images/s
as medians of --repeats runs (warm-up and compilation excluded; compile seconds reported apart) and the ratios
Flax/torch; then seconds per epoch, with the notebooks' own loops: notebook 002's (data on the host, each batch
moved) and notebook 004's (DataLoader + ToTensor + Normalize); then the time to 99% test accuracy. The JSON
names the device and the versions. --quick runs few steps (a smoke test, not a measurement).
"""

import argparse
import json
import platform
import sys
import time

import jax

import torch

from jaxcnn.preprocess import PREPROCESS
from parity import notebook_loops, torch_models
from train import data as data_lib
from train import fit, recipes, startup
from train.step import epoch_order, variables_of
from train.timing import median_seconds

BENCH_MODELS = ("lenet5_mnist", "mnist_cnn")
FAST_RECIPE = recipes.named("fast_99")  # time to 99% in a few epochs (train.recipes says how it was found)
ONE_EPOCH_RECIPE = recipes.named("one_epoch_99")  # >= 99% after one epoch


def _median_rate(run, images_per_run: int, repeats: int) -> float:
    return images_per_run / median_seconds(run, repeats)


def _recipe_run(recipe: dict, num_train: int, micro_batches: int | None = None) -> fit.Run:
    """train.fit's set-up of `recipe` (a named recipe, or a model's notebook recipe with its `model`) on one
    device, weights as torch initialises them."""
    return fit.setup(fit.Settings(**recipe), num_train, devices=jax.devices()[:1], micro_batches=micro_batches)


def _notebook_recipe(name: str) -> dict:
    return dict(recipes.for_model(name), model=name)


def flax_rates(name: str, dataset: data_lib.Dataset, steps: int, repeats: int, infer_batch: int = 1000,
               micro_batches: int | None = None) -> dict:
    recipe = _notebook_recipe(name)
    run = _recipe_run(recipe, len(dataset.train_labels), micro_batches)
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


def torch_rates(name: str, dataset: data_lib.Dataset, steps: int, repeats: int, device, infer_batch: int = 1000,
                compiled: bool = False) -> dict:
    """The notebooks' step (zero_grad, forward, CrossEntropyLoss, backward, Adam step) on tensors already on
    `device` (a torch.device; cudnn.benchmark on for CUDA), and inference on one batch there."""
    torch.backends.cudnn.benchmark = True
    recipe = recipes.for_model(name)
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])[:steps]
    start = time.perf_counter()
    train = notebook_loops.tensor_loop(name, dataset.train_images, dataset.train_labels, recipe["preprocess"],
                                       recipe["lr"], recipe["batch_size"], device, compiled=compiled)
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


def notebook_epoch_seconds(name: str, dataset: data_lib.Dataset, steps: int, device, torchvision: bool = False) -> dict:
    """Seconds per epoch of notebook 002's loop (host tensors, each batch moved) and notebook 004's (DataLoader,
    ToTensor, Normalize), from `steps` timed steps after a warm-up of 10 (the whole epoch when steps covers it)."""
    recipe = recipes.for_model(name)
    per_epoch = len(dataset.train_labels) // recipe["batch_size"]
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])
    timed = order[: min(steps, per_epoch)]
    args = (name, dataset.train_images, dataset.train_labels, recipe["preprocess"], recipe["lr"],
            recipe["batch_size"], device)
    loops = {"notebook_002": notebook_loops.notebook_002_loop(*args),
             "notebook_004": notebook_loops.notebook_004_loop(*args, torchvision=torchvision)}
    result = {"notebook_loop_steps_timed": len(timed)}
    for label, run in loops.items():
        run(order[:10])
        seconds = notebook_loops.timed_steps(run, timed, device)
        result[f"{label}_seconds_per_epoch"] = seconds * per_epoch / len(timed)
    return result


def time_to_accuracy(dataset: data_lib.Dataset, recipe: dict | None = None, target: float = 0.99,
                     max_epochs: int = 10, seed: int = 0) -> dict:
    """Trains with `recipe` (a one-cycle recipe like FAST_RECIPE, for its epochs; None: notebook 004's
    mnist_cnn recipe, for at most max_epochs) with train.fit until the test accuracy reaches `target`;
    training seconds exclude compilation and the per-epoch evaluation."""
    recipe = dict(_notebook_recipe("mnist_cnn"), epochs=max_epochs) if recipe is None else dict(recipe)
    run = _recipe_run(dict(recipe, seed=seed), len(dataset.train_labels))
    trainer = run.trainer
    state, dropout_key = trainer.init_state(seed)
    data = (*trainer.put_replicated((dataset.train_images, dataset.train_labels)),
            *trainer.put_replicated((dataset.test_images, dataset.test_labels)))
    compile_seconds = sum(trainer.compile(state, data[0], data[1], dropout_key, recipe["batch_size"],
                                          run.steps_per_epoch, test=data[2:]).values())
    _, history = fit.fit(run, state, dropout_key, data, on_epoch=lambda entry, _: entry["test_accuracy"] >= target)
    accuracies = [e["test_accuracy"] for e in history]
    return {"model": recipe["model"], "recipe": recipe, "seed": seed, "target": target,
            "reached": accuracies[-1] >= target, "epochs": len(history),
            "train_seconds": sum(e["seconds"] for e in history), "compile_seconds": compile_seconds,
            "test_accuracy_per_epoch": accuracies, "seconds_since_start": startup.seconds_since_start()}


def one_epoch_99(dataset: data_lib.Dataset, seeds=(0, 1, 2)) -> dict:
    """ONE_EPOCH_RECIPE from each initialisation seed: passes when the mean accuracy after its one epoch is
    >= 99.0% and none is under 98.9%."""
    runs = [time_to_accuracy(dataset, ONE_EPOCH_RECIPE, seed=seed) for seed in seeds]
    accuracies = [r["test_accuracy_per_epoch"][-1] for r in runs]
    return {"recipe": ONE_EPOCH_RECIPE, "seeds": list(seeds), "test_accuracy": accuracies,
            "mean": sum(accuracies) / len(accuracies), "min": min(accuracies),
            "passed": sum(accuracies) / len(accuracies) >= 0.99 and min(accuracies) >= 0.989,
            "train_seconds": [r["train_seconds"] for r in runs], "compile_seconds": [r["compile_seconds"] for r in runs]}


def benchmark(dataset: data_lib.Dataset, steps: int, repeats: int, with_compile: bool,
              micro_batches: int | None = None, time_to_99: bool = True, notebook_steps: int = 300,
              torchvision: bool = False) -> dict:
    """Every row of the side-by-side comparison, torch on the device JAX uses (see module docstring)."""
    device = notebook_loops.torch_device(jax.default_backend())
    results = {}
    for name in BENCH_MODELS:
        row = flax_rates(name, dataset, steps, repeats, micro_batches=micro_batches) | torch_rates(
            name, dataset, steps, repeats, device)
        if with_compile:
            try:
                row |= torch_rates(name, dataset, steps, repeats, device, compiled=True)
            except Exception as err:  # torch.compile needs a working inductor toolchain
                row["torch_compile_train_images_per_s"] = None
                row["torch_compile_error"] = f"{type(err).__name__}: {err}"[:300]
        row["train_ratio_flax_over_torch_eager"] = (row["flax_train_images_per_s"]
                                                    / row["torch_eager_train_images_per_s"])
        row["infer_ratio_flax_over_torch"] = row["flax_infer_images_per_s"] / row["torch_infer_images_per_s"]
        batch = recipes.for_model(name)["batch_size"]
        epoch_images = len(dataset.train_labels) // batch * batch
        row["flax_seconds_per_epoch"] = epoch_images / row["flax_train_images_per_s"]
        row["torch_eager_seconds_per_epoch"] = epoch_images / row["torch_eager_train_images_per_s"]
        if notebook_steps:
            row |= notebook_epoch_seconds(name, dataset, notebook_steps, device, torchvision)
        results[name] = row
    if time_to_99:
        results["one_epoch_99"] = one_epoch_99(dataset)
        results["time_to_99"] = time_to_accuracy(dataset, FAST_RECIPE)
        results["time_to_99_notebook_recipe"] = time_to_accuracy(dataset)
    results["device"] = {"jax": str(jax.devices()[0]), "jax_platform": jax.default_backend(),
                         "torch": str(device), "name": notebook_loops.device_name(device),
                         "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    results["versions"] = {"python": platform.python_version(), "jax": jax.__version__,
                           "jaxlib": __import__("jaxlib").__version__, "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "flax": __import__("flax").__version__, "optax": __import__("optax").__version__}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench", description=__doc__)
    parser.add_argument("--data-dir", help=f"the four MNIST IDX .gz files (or ${data_lib.DATA_DIR_ENV})")
    parser.add_argument("--steps", type=int, default=300, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 steps, 2 repeats, no torch.compile, no time-to-99%%")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--micro-batches", type=int, help="gradient parts per step (default: train.step's choice)")
    parser.add_argument("--notebook-steps", type=int, default=300,
                        help="steps timed of each notebook loop, scaled to an epoch (0: skip those rows)")
    parser.add_argument("--torchvision", action="store_true",
                        help="notebook 004's loop with torchvision's own ToTensor and Normalize (needs torchvision)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    try:
        dataset = data_lib.load("mnist", args.data_dir)
    except data_lib.DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    results = benchmark(dataset, steps, repeats, args.compile and not args.quick, args.micro_batches,
                        time_to_99=not args.quick, notebook_steps=10 if args.quick else args.notebook_steps,
                        torchvision=args.torchvision)
    print(f"{'model':14s} {'':6s} {'flax img/s':>12s} {'torch eager':>12s} {'torch.compile':>14s} {'flax/eager':>11s}")
    for name in BENCH_MODELS:
        r = results[name]
        compiled = r.get("torch_compile_train_images_per_s")
        compiled = "-" if compiled is None else f"{compiled:.0f}"
        print(f"{name:14s} {'train':6s} {r['flax_train_images_per_s']:12.0f} {r['torch_eager_train_images_per_s']:12.0f} "
              f"{compiled:>14s} {r['train_ratio_flax_over_torch_eager']:10.2f}x")
        print(f"{name:14s} {'infer':6s} {r['flax_infer_images_per_s']:12.0f} {r['torch_infer_images_per_s']:12.0f} "
              f"{'':>14s} {r['infer_ratio_flax_over_torch']:10.2f}x")
    print(f"\nseconds per epoch {'flax':>8s} {'torch eager':>12s} {'notebook 002':>13s} {'notebook 004':>13s}")
    for name in BENCH_MODELS:
        r = results[name]
        loops = [r.get(f"notebook_00{n}_seconds_per_epoch") for n in (2, 4)]
        print(f"{name:17s} {r['flax_seconds_per_epoch']:8.2f} {r['torch_eager_seconds_per_epoch']:12.2f} "
              + " ".join("            -" if v is None else f"{v:13.2f}" for v in loops))
    for key, label in (("time_to_99", "FAST_RECIPE"), ("time_to_99_notebook_recipe", "notebook recipe")):
        if key in results:
            t = results[key]
            print(f"time to {100 * t['target']:.0f}% test accuracy, {t['model']} ({label}): "
                  f"{t['train_seconds']:.1f} s in {t['epochs']} epochs (+ {t['compile_seconds']:.1f} s compile)"
                  f"{'' if t['reached'] else ' -- NOT reached'}; per epoch "
                  f"{[round(a, 4) for a in t['test_accuracy_per_epoch']]}")
    print(f"{results['device']}\n{results['versions']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
