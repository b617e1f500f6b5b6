"""Files: torch state_dicts (.pt/.pth/.bin, .safetensors) and Flax variables (.safetensors, orbax directories).

A .safetensors file holds Flax variables when its keys are '/'-joined paths
('params/conv1/kernel'), a torch state_dict when they are torch keys
('conv1.weight'). A directory is an orbax-checkpoint of Flax variables.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import safetensors.numpy
import safetensors.torch
import torch
from flax.traverse_util import flatten_dict, unflatten_dict

import jaxcnn
from jaxcnn.files import atomic_target
from parity.checks import convert
from parity.originals import torch_models
from train.inspection.trained import InspectError, load_trained

TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def holds_flax(path: str | Path) -> bool:
    """True for an orbax directory or a .safetensors of '/'-keyed Flax variables."""
    path = Path(path)
    if path.is_dir():
        return True
    if _is_safetensors(path) and path.exists():
        with safetensors.safe_open(str(path), "np") as f:
            return any("/" in key for key in f.keys())
    return False


def load_torch_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A torch state_dict from .pt/.pth (also {'state_dict': ...} wrappers) or .safetensors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if _is_safetensors(path):
        return safetensors.torch.load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises KeyError, UnpicklingError, RuntimeError ... for what it cannot read
        raise ValueError(f"{path} is not a checkpoint torch.load can read with weights_only=True ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'}); give a state_dict saved by "
                         "torch.save, or a .safetensors file") from err
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


def save_torch_state(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Writes a state_dict as .pt/.pth (torch.save) or .safetensors, atomically (temp file + rename)."""
    path = Path(path)
    if not (_is_safetensors(path) or path.suffix in TORCH_SUFFIXES):
        raise ValueError(f"torch state_dicts go to .pt, .pth, .bin, .ckpt or .safetensors, not {path.name}")
    with atomic_target(path) as tmp:
        if _is_safetensors(path):
            safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        else:
            torch.save(state, tmp)


def save_flax(variables: Any, path: str | Path) -> None:
    """Flax variables to .safetensors ('/'-joined keys) or to an orbax checkpoint directory."""
    path = Path(path)
    if _is_safetensors(path):
        flat = {"/".join(k): np.asarray(v) for k, v in flatten_dict(jax.device_get(dict(variables))).items()}
        with atomic_target(path) as tmp:
            safetensors.numpy.save_file(flat, str(tmp))
        return
    if path.suffix in TORCH_SUFFIXES:
        raise ValueError(f"{path.name}: a {path.suffix} name is for torch state_dicts; Flax variables go to "
                         ".safetensors or a directory")
    # orbax writes a new directory beside the target, which is renamed onto it only when complete.
    if path.is_dir() and not _is_orbax_checkpoint(path):
        raise FileExistsError(f"{path} is a directory that holds no orbax checkpoint: it is not replaced")
    tmp = path.absolute().with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp, jax.device_get(dict(variables)))
        checkpointer.wait_until_finished()
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename happened


def load_flax(path: str | Path, abstract: Any = None) -> dict:
    """Flax variables from .safetensors or an orbax directory (restored to `abstract`'s structure if given)."""
    path = Path(path)
    if _is_safetensors(path):
        flat = safetensors.numpy.load_file(str(path))
        return unflatten_dict({tuple(k.split("/")): jax.numpy.asarray(v) for k, v in flat.items()})
    if not path.is_dir():
        raise FileNotFoundError(f"no Flax checkpoint (a .safetensors file or an orbax directory) at {path}")
    return dict(ocp.StandardCheckpointer().restore(path.absolute(), abstract))


def _is_orbax_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "_CHECKPOINT_METADATA").is_file()


def check_target(source: str | Path, target: str | Path, overwrite: bool = False) -> None:
    """Refuses a target that is the source, or exists (unless overwrite; a directory only when it holds an orbax
    checkpoint, a file only when it is a file): a conversion never destroys what it did not write."""
    source, target = Path(source), Path(target)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise FileExistsError(f"{target} is the source itself: give another target")
    if not target.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{target} exists: give a new target, or --overwrite (overwrite=True) to replace it")
    if target.is_dir() and not _is_orbax_checkpoint(target):
        raise FileExistsError(f"{target} is a directory that holds no orbax checkpoint: it is not replaced, even "
                              "with --overwrite; give a new target")


def is_run_folder(path: str | Path) -> bool:
    """A `python -m train.mnist --out` folder (or its checkpoints/ directory)."""
    path = Path(path)
    return path.is_dir() and (path.name == "checkpoints" or (path / "checkpoints").is_dir())


def _convert_run(model_name: str, source: Path, target: Path) -> str:
    """The newest intact checkpoint of a train.mnist run, as a torch state_dict of the model it trained."""
    try:
        trained = load_trained(source, model_name)
    except InspectError as err:
        raise ValueError(str(err)) from err
    module = torch_models.create(model_name, **trained.model_kwargs)
    state = convert.flax_to_torch(trained.variables, trained.model, module)
    module.load_state_dict(state, strict=True)
    save_torch_state(state, target)
    return f"train.mnist run (epoch {trained.epoch}) -> torch"


def convert_file(model_name: str, source: str | Path, target: str | Path, overwrite: bool = False,
                 **model_kwargs) -> str:
    """Converts a checkpoint file between torch and Flax for the registry model `model_name`.

    torch (.pt/.pth/.bin or torch-keyed .safetensors) -> Flax (.safetensors or an orbax directory);
    Flax (.safetensors or orbax directory) -> torch (.pt/.pth or .safetensors); a `python -m train.mnist` run
    folder (its newest checkpoint) -> torch. Returns the direction.
    The target is written atomically and never replaces the source, nor an existing file or directory unless
    `overwrite` (see check_target).
    """
    check_target(source, target, overwrite)
    if is_run_folder(source):
        return _convert_run(model_name, Path(source), Path(target))
    model = jaxcnn.create_model(model_name, **model_kwargs)
    module = torch_models.create(model_name, **model_kwargs)
    if holds_flax(source):
        abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, *model.input_shape), np.float32)))
        variables = load_flax(source, abstract if Path(source).is_dir() else None)
        state = convert.flax_to_torch(variables, model, module)
        module.load_state_dict(state, strict=True)
        save_torch_state(state, target)
        return "Flax -> torch"
    variables = convert.torch_to_flax(load_torch_state(source), model)
    save_flax(variables, target)
    return "torch -> Flax"
