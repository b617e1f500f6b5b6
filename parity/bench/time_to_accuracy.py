"""Time to accuracy on MNIST, the trainer's own loop (train.trainer.fit) from torch's initialisation: `time_to_accuracy`
trains a recipe until its test accuracy reaches the target; `one_epoch_99` checks the one-epoch recipe over seeds.
Rows of python -m parity.bench."""

import jax

from train.data.dataset import Dataset
from train.trainer import fit, recipes, startup

FAST_RECIPE = recipes.named("fast_99")  # time to 99% in a few epochs (train.trainer.recipes says how it was found)
ONE_EPOCH_RECIPE = recipes.named("one_epoch_99")  # >= 99% after one epoch


def recipe_run(recipe: dict, dataset: Dataset, micro_batches: int | None = None) -> fit.Run:
    """train.trainer.fit's set-up of `recipe` (a named recipe, or a model's notebook recipe with its `model`) on one
    device, weights as torch initialises them."""
    return fit.setup(fit.Settings(**recipe), dataset, devices=jax.devices()[:1], micro_batches=micro_batches)


def notebook_recipe(name: str, dataset: str = "mnist") -> dict:
    return dict(recipes.for_model(name, dataset), model=name, dataset=dataset)


def time_to_accuracy(dataset: Dataset, recipe: dict | None = None, target: float = 0.99,
                     max_epochs: int = 10, seed: int = 0) -> dict:
    """Trains with `recipe` (a one-cycle recipe like FAST_RECIPE, for its epochs; None: notebook 004's
    mnist_cnn recipe, for at most max_epochs) with train.trainer.fit until the test accuracy reaches `target`;
    training seconds exclude compilation and the per-epoch evaluation."""
    recipe = dict(notebook_recipe("mnist_cnn"), epochs=max_epochs) if recipe is None else dict(recipe)
    run = recipe_run(dict(recipe, seed=seed), dataset)
    trainer = run.trainer
    state, dropout_key = trainer.init_state(seed)
    data = fit.place(run, dataset)
    compile_seconds = sum(trainer.compile(state, data[0], data[1], dropout_key, recipe["batch_size"],
                                          run.steps_per_epoch, test=data[2:]).values())
    _, history = fit.fit(run, state, dropout_key, data, on_epoch=lambda entry, _: entry["test_accuracy"] >= target)
    accuracies = [e["test_accuracy"] for e in history]
    return {"model": recipe["model"], "recipe": recipe, "seed": seed, "target": target,
            "reached": accuracies[-1] >= target, "epochs": len(history),
            "train_seconds": sum(e["seconds"] for e in history), "compile_seconds": compile_seconds,
            "test_accuracy_per_epoch": accuracies, "seconds_since_start": startup.seconds_since_start()}


def one_epoch_99(dataset: Dataset, seeds=(0, 1, 2)) -> dict:
    """ONE_EPOCH_RECIPE from each initialisation seed: passes when the mean accuracy after its one epoch is
    >= 99.0% and none is under 98.9%."""
    runs = [time_to_accuracy(dataset, ONE_EPOCH_RECIPE, seed=seed) for seed in seeds]
    accuracies = [r["test_accuracy_per_epoch"][-1] for r in runs]
    return {"recipe": ONE_EPOCH_RECIPE, "seeds": list(seeds), "test_accuracy": accuracies,
            "mean": sum(accuracies) / len(accuracies), "min": min(accuracies),
            "passed": sum(accuracies) / len(accuracies) >= 0.99 and min(accuracies) >= 0.989,
            "train_seconds": [r["train_seconds"] for r in runs], "compile_seconds": [r["compile_seconds"] for r in runs]}
