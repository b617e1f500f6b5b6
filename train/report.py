"""What a run leaves behind: metrics.json (written atomically) and a PNG of the loss and accuracy curves."""

import json
from pathlib import Path

from jaxcnn import files


def write_json(obj, path: str | Path) -> None:
    files.write_text(path, json.dumps(obj, indent=2, default=float))


def plot_curves(epochs: list[dict], path: str | Path, title: str = "") -> None:
    """Train/test loss and test accuracy per epoch, side by side."""
    from matplotlib.figure import Figure  # not pyplot: no GUI backend to import, half a second sooner

    x = [e["epoch"] for e in epochs]
    fig = Figure(figsize=(10, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(x, [e["train_loss"] for e in epochs], "o-", label="train")
    loss_ax.plot(x, [e["test_loss"] for e in epochs], "s-", label="test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_ax.legend()
    acc_ax.plot(x, [100 * e["test_accuracy"] for e in epochs], "s-", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="%", title="test accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with files.atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=100)
