"""A port on disk: model.py, torch_weights.json (the tables the generated class carries) and
variables.safetensors, written by `save` (and `python -m parity port`), read back by `load`."""

import json
from pathlib import Path
from typing import Any

import numpy as np
from flax import linen as nn, nnx
from flax.traverse_util import unflatten_dict

from parity.checks import io
from parity.port import _source
from parity.port._nnx_view import flat_variables
from parity.port._port import Ported, _tabled, network

TABLES = "torch_weights.json"


def _weights_of(ported: Ported) -> dict:
    """The variables that variables.safetensors holds: linen's, or an NNX network's weights by state path."""
    if isinstance(ported.module, nnx.Module):
        return {tuple(name.split("/")): v for name, (_, v) in flat_variables(ported.variables).items()}
    return ported.variables


def save(ported: Ported, directory: str | Path) -> None:
    """Writes model.py, torch_weights.json (the tables of `_tabled`) and variables.safetensors (the Flax
    variables, '/'-joined keys: linen's collection/module/name, NNX's state paths) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(ported.module)
    (directory / "model.py").write_text(ported.source)
    constants = {path: {"key": key, "dtype": str(value.dtype), "value": value.tolist()}
                 for path, (key, value) in cls.TORCH_CONSTANTS.items()}
    tables = {"class": cls.__name__, "api": "nnx" if isinstance(ported.module, nnx.Module) else "linen",
              "weights": cls.TORCH_WEIGHTS, "dropouts": cls.TORCH_DROPOUTS, "constants": constants,
              "train_branches": cls.TORCH_TRAIN_BRANCHES, "metadata": cls.TORCH_METADATA}
    (directory / TABLES).write_text(json.dumps(tables, indent=1))
    flat = _weights_of(ported)
    io.save_flax(unflatten_dict(flat) if isinstance(ported.module, nnx.Module) else flat,
                 directory / "variables.safetensors")


def load(directory: str | Path) -> tuple[nn.Module | nnx.Module, Any]:
    """(module, variables) from a directory written by `python -m parity port` or `save`: an NNX port as
    (net, nnx.state(net)), net in eval mode; a linen port as (module, variables).

    Its model.py is imported as a module of a name that stays the same for the same directory (so its classes
    pickle, and `inspect.getsource` and tracebacks show its lines).
    Raises:
        FileNotFoundError: the directory lacks model.py or torch_weights.json (written by an older port).
    """
    directory = Path(directory)
    path = directory / "model.py"
    for needed in (path, directory / TABLES):
        if not needed.is_file():
            raise FileNotFoundError(f"{directory} holds no {needed.name}: write it with `python -m parity port ... "
                                    f"--out {directory}`")
    tables = json.loads((directory / TABLES).read_text())
    cls = _source.instantiate(path.read_text(), tables["class"], _source.module_name(directory), path.resolve())
    constants = {path: (c["key"], np.asarray(c["value"], c["dtype"])) for path, c in tables.get("constants", {}).items()}
    cls = _tabled(cls, tables["weights"], tables["dropouts"], constants, tables.get("train_branches", False),
                  tables.get("metadata"))
    variables = io.load_flax(directory / "variables.safetensors")
    if tables.get("api", "linen") == "nnx":
        net = network(cls, variables)
        return net, nnx.state(net)
    return cls(), variables
