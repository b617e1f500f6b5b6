"""Epoch checkpoints with orbax-checkpoint: atomic (orbax writes to a temporary directory and renames), the
training state and the metrics history together, so a resumed run continues exactly where it stopped; each with
a checksum of its arrays and a list of its files (size, sha256), both of which `restore` verifies: the files before
orbax reads any of them (orbax's reader, failing on a missing or damaged file, leaves coroutines behind)."""

import hashlib
import json
import os
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


FILE_LIST = "files.json"


def _file_list(step_dir: Path) -> dict[str, list]:
    """{path relative to step_dir: [size, sha256]} of every file under step_dir but the list itself."""
    listing = {}
    for path in sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != FILE_LIST):
        with path.open("rb") as f:
            listing[str(path.relative_to(step_dir))] = [path.stat().st_size, hashlib.file_digest(f, "sha256").hexdigest()]
    return listing


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
        if jax.process_index() == 0:  # written after orbax's rename: a checkpoint without it is taken as it is
            step_dir = self.directory / str(epoch)
            partial = step_dir / f".{FILE_LIST}.partial"
            partial.write_text(json.dumps(_file_list(step_dir)))
            os.replace(partial, step_dir / FILE_LIST)

    def verify_files(self, epoch: int) -> None:
        """Raises CheckpointError naming the first file of epoch `epoch` that is missing or differs from the list
        saved with it (size, then sha256); a checkpoint without a list passes."""
        step_dir = self.directory / str(epoch)
        if not (step_dir / FILE_LIST).is_file():
            return
        for name, (size, digest) in json.loads((step_dir / FILE_LIST).read_text()).items():
            path = step_dir / name
            if not path.is_file():
                raise CheckpointError(f"{step_dir}: its file {name} is missing")
            with path.open("rb") as f:
                if path.stat().st_size != size or hashlib.file_digest(f, "sha256").hexdigest() != digest:
                    raise CheckpointError(f"{step_dir}: its file {name} differs from the one saved (damaged)")

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

        Raises CheckpointError when a file differs from the list saved with it, or the arrays do not match the
        checksum saved with them (a checkpoint written before these were kept is taken as it is)."""
        self.verify_files(epoch)
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
