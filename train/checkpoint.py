"""Epoch checkpoints with orbax-checkpoint: atomic (orbax writes to a temporary directory and renames), the
training state and the metrics history together, so a resumed run continues exactly where it stopped."""

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that was not written, or a directory that holds another run's."""


def saved_epochs(out: str | Path) -> list[int]:
    """The epochs with a checkpoint under `<out>/checkpoints` (read from the folder names; nothing is created)."""
    directory = Path(out) / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()) \
        if directory.is_dir() else []


class Checkpoints:
    """`<out>/checkpoints/<epoch>/{state, meta}`; keeps the newest `keep`."""

    def __init__(self, out: str | Path, keep: int = 2):
        self.directory = Path(out).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"))

    def save(self, epoch: int, state: Any, meta: dict) -> None:
        """Saves epoch `epoch`; raises CheckpointError when orbax skips it (it never replaces an epoch it holds)."""
        saved = self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                 meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()
        if not saved:
            raise CheckpointError(f"the checkpoint of epoch {epoch} was not written: {self.directory / str(epoch)} "
                                  "already exists (an earlier run's); start again with --resume, --overwrite or "
                                  "another --out")

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, epoch: int, abstract_state: Any) -> tuple[Any, dict]:
        """The state (shaped and placed like `abstract_state`, on any devices) and the metadata saved at `epoch`."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
        restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"])

    def meta(self, epoch: int) -> dict:
        """Only the metadata saved at `epoch` (config and metrics history)."""
        return dict(self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def close(self) -> None:
        self.manager.close()
