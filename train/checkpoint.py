"""Epoch checkpoints with orbax-checkpoint: atomic (orbax writes to a temporary directory and renames), the
training state and the metrics history together, so a resumed run continues exactly where it stopped; each with
a checksum of its arrays, which `restore` verifies."""

import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that was not written, or a directory that holds another run's."""


def saved_epochs(out: str | Path) -> list[int]:
    """The epochs with a checkpoint under `<out>/checkpoints` (read from the folder names; nothing is created)."""
    directory = Path(out) / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()) \
        if directory.is_dir() else []


def checksum(tree: Any) -> str:
    """sha256 over every array of `tree` (dtype, shape, bytes), as this process holds it (replicated arrays: its
    first local copy)."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.asarray(leaf.addressable_data(0)) if isinstance(leaf, jax.Array) else np.asarray(leaf)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


class Checkpoints:
    """`<out>/checkpoints/<epoch>/{state, meta}`; keeps the newest `keep`."""

    def __init__(self, out: str | Path, keep: int = 2):
        self.directory = Path(out).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"))

    def save(self, epoch: int, state: Any, meta: dict) -> None:
        """Saves epoch `epoch`; raises CheckpointError when orbax skips it (it never replaces an epoch it holds)."""
        meta = {**meta, "checksum": checksum(state)}
        saved = self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                 meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()
        if not saved:
            raise CheckpointError(f"the checkpoint of epoch {epoch} was not written: {self.directory / str(epoch)} "
                                  "already exists (an earlier run's); start again with --resume, --overwrite or "
                                  "another --out")

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def set_aside(self, epoch: int) -> Path:
        """Renames a damaged checkpoint to `damaged-<epoch>` (kept, out of the way of a new save of that epoch)."""
        aside = self.directory / f"damaged-{epoch}"
        if jax.process_index() == 0:
            (self.directory / str(epoch)).rename(aside)
        self.manager.reload()
        return aside

    def epochs(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, epoch: int, abstract_state: Any) -> tuple[Any, dict]:
        """The state (shaped and placed like `abstract_state`, on any devices) and the metadata saved at `epoch`.

        Raises CheckpointError when the arrays do not match the checksum saved with them (a checkpoint written
        before checksums were kept is taken as it is)."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
        restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       meta=ocp.args.JsonRestore()))
        meta = dict(restored["meta"])
        if "checksum" in meta and checksum(restored["state"]) != meta["checksum"]:
            raise CheckpointError(f"{self.directory / str(epoch)}: its arrays do not match the checksum saved with "
                                  "them (the files were damaged)")
        return restored["state"], meta

    def meta(self, epoch: int) -> dict:
        """Only the metadata saved at `epoch` (config and metrics history)."""
        return dict(self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def close(self) -> None:
        self.manager.close()
