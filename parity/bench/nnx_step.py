"""The NNX step beside the linen step: the trainer's training throughput on the MNIST networks with `--api nnx`
(the native NNX network, train.trainer.nnx_model) and `--api linen`, same recipe, data, devices and loop.
Rows of python -m parity.bench (`--nnx-only`: these rows alone). The target: NNX within 5% of linen."""

import re
import statistics

from parity.bench.time_to_accuracy import notebook_recipe, recipe_run
from train.data.dataset import Dataset
from train.trainer.step import epoch_order
from train.trainer.timing import timed

APIS = ("linen", "nnx")


def _timed_steps(name: str, api: str, dataset: Dataset, steps: int):
    """A function that runs `steps` training steps of the run's recipe with `api` (compiled, warmed up)."""
    recipe = dict(notebook_recipe(name, dataset.name), api=api)
    trainer = recipe_run(recipe, dataset).trainer
    images, labels = trainer.put_replicated((dataset.train_images, dataset.train_labels))
    state, key = trainer.init_state(0)
    trainer.compile(state, images, labels, key, recipe["batch_size"])
    order = epoch_order(0, 1, len(dataset.train_labels), recipe["batch_size"])[:steps]

    def train():
        nonlocal state
        state, losses = trainer.train_steps(state, images, labels, order, key)
        return losses[-1]

    timed(train)  # warm-up
    return train, steps * recipe["batch_size"], trainer


def _instructions(trainer) -> list[str]:
    """The compiled step's XLA instructions, names, metadata and stack frames left out, sorted."""
    text = re.sub(r", (metadata=\{[^}]*\}|stack_frame_id=\S*|origin=\S*)", "", trainer.compiled_step_text())
    return sorted(re.sub(r"%[\w.\-]+", "%", line.strip()) for line in text.splitlines() if " = " in line)


def nnx_row(name: str, dataset: Dataset, steps: int, repeats: int) -> dict:
    """images/s of the linen and the NNX step of `name` (medians of `repeats` runs of `steps` steps, the two
    APIs' runs interleaved so that a machine's changing load falls on both alike), their ratio nnx/linen, and
    whether the two compiled steps are the same XLA program (then a ratio away from 1 is the machine's noise)."""
    runs = {api: _timed_steps(name, api, dataset, steps) for api in APIS}
    seconds = {api: [] for api in APIS}
    for _ in range(repeats):
        for api, (train, _, _) in runs.items():
            seconds[api].append(timed(train)[1])
    rates = {api: runs[api][1] / statistics.median(seconds[api]) for api in APIS}
    trainer = runs["nnx"][2]
    return {"linen_train_images_per_s": rates["linen"], "nnx_train_images_per_s": rates["nnx"],
            "ratio_nnx_over_linen": rates["nnx"] / rates["linen"],
            "same_compiled_step": _instructions(runs["linen"][2]) == _instructions(trainer), "loop": trainer.loop,
            "micro_batches": trainer.micro_batches, "steps_timed": steps, "repeats": repeats}


def nnx_rows(dataset: Dataset, models, steps: int, repeats: int) -> dict:
    return {name: nnx_row(name, dataset, steps, repeats) for name in models}


def print_rows(rows: dict) -> None:
    print(f"\n{'NNX vs linen':14s} {'linen img/s':>12s} {'nnx img/s':>12s} {'nnx/linen':>10s}  (train step)")
    for name, r in rows.items():
        print(f"{name:14s} {r['linen_train_images_per_s']:12.1f} {r['nnx_train_images_per_s']:12.1f} "
              f"{r['ratio_nnx_over_linen']:9.3f}x  ({r['loop']} loop, {r['micro_batches']} micro-batches, "
              f"{r['steps_timed']} steps x {r['repeats']}; compiled steps "
              f"{'identical' if r['same_compiled_step'] else 'differ'})")
