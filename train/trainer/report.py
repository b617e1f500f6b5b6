"""What a run leaves behind: metrics.json (written atomically) and a PNG of the loss and accuracy curves."""

import json
from pathlib import Path

from jaxcnn import files


def write_json(obj, path: str | Path) -> None:
    files.write_text(path, json.dumps(obj, indent=2, default=float))


def plot_curves(epochs: list[dict], path: str | Path, title: str = "", loss_name: str = "cross-entropy") -> None:
    """Train/test loss per epoch and, where the entries have one, test accuracy beside it."""
    from matplotlib.figure import Figure  # not pyplot: no GUI backend to import, half a second sooner

    x = [e["epoch"] for e in epochs]
    accuracy = bool(epochs) and "test_accuracy" in epochs[0]
    fig = Figure(figsize=(10 if accuracy else 5.5, 4))
    axes = fig.subplots(1, 2 if accuracy else 1, squeeze=False)[0]
    loss_ax = axes[0]
    loss_ax.plot(x, [e["train_loss"] for e in epochs], "o-", label="train")
    loss_ax.plot(x, [e["test_loss"] for e in epochs], "s-", label="test")
    loss_ax.set(xlabel="epoch", ylabel=loss_name, title="loss")
    loss_ax.legend()
    if not accuracy:
        loss_ax.set_yscale("log")  # a regression's MSE falls by decades (notebook 003: 3135.7 to 9.6 in 5 epochs)
    if accuracy:
        axes[1].plot(x, [100 * e["test_accuracy"] for e in epochs], "s-", color="tab:green")
        axes[1].set(xlabel="epoch", ylabel="%", title="test accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with files.atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=100)
