"""`python -m parity port path/to/file.py:ClassName --input-shape N,C,H,W --out DIR [--api nnx|linen]`: ports the
class (to Flax NNX unless --api linen), writes DIR/model.py, DIR/torch_weights.json, DIR/variables.safetensors and DIR/report.json, checks the written model.py against the torch module
and prints the table. Exit status: 0 when every check passes, 1 when one fails, 2 when nothing could be ported."""

import argparse
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import flax
import jax
import numpy as np
import torch

from jaxcnn.files import error_line, write_text
from jaxcnn.interchange import ConversionError
from parity.checks import io
from parity.port._check import check
from parity.port._port import APIS, build
from parity.port._saved import load, save
from parity.port._trace import PortError


def add_parser(commands) -> None:
    port = commands.add_parser("port", help="port your own torch nn.Module to a Flax module with its weights",
                               description=__doc__)
    port.add_argument("target", help="path/to/file.py:ClassName (a class, or a function returning an nn.Module)")
    port.add_argument("--input-shape", required=True, help="the torch input shape, e.g. 1,3,32,32 (N,C,H,W)")
    port.add_argument("--kwargs", default="{}", help="JSON of the constructor's keyword arguments")
    port.add_argument("--weights", help="a state_dict to port with it (.pt/.pth/.bin, or .safetensors); loaded "
                                        "strictly, with torch.load(weights_only=True)")
    port.add_argument("--out", required=True, help="the directory to write (must not exist, or hold a port)")
    port.add_argument("--overwrite", action="store_true", help="replace a directory that holds an earlier port")
    port.add_argument("--api", choices=APIS, default="nnx",
                      help="the Flax API model.py is written in: nnx (the default, as Flax recommends for new code) "
                           "or linen")
    port.add_argument("--seed", type=int, default=0, help="of the random input and targets of the checks")
    port.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _user_module(target: str, kwargs: dict) -> torch.nn.Module:
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise ValueError(f"{target!r}: give the file and the class as path/to/file.py:ClassName")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    sys.path.insert(0, str(path.parent.absolute()))  # the file's own imports of its neighbours
    spec = importlib.util.spec_from_file_location(path.stem, path)
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    factory = getattr(source, name, None)
    if factory is None:
        found = sorted(k for k, v in vars(source).items() if isinstance(v, type) and issubclass(v, torch.nn.Module))
        raise ValueError(f"{path} defines no {name!r}; its nn.Module classes: {', '.join(found) or 'none'}")
    module = factory(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"{target} made a {type(module).__name__}, not a torch.nn.Module")
    return module


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise ValueError(f"--input-shape {text!r}: give integers separated by commas, e.g. 1,3,32,32") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r}: give (N, C, ...) with every size at least 1")
    return shape


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir() or not (out / "model.py").is_file():
        raise FileExistsError(f"{out} exists and holds no port: choose another --out (nothing was written)")
    if not overwrite:
        raise FileExistsError(f"{out} holds an earlier port: pass --overwrite to replace it, or choose another --out")


def run(args) -> int:
    out = Path(args.out)
    try:
        kwargs = json.loads(args.kwargs)
        shape = _input_shape(args.input_shape)
        _check_out(out, args.overwrite)
        module = _user_module(args.target, kwargs)
        if args.weights:
            module.load_state_dict(io.load_torch_state(args.weights), strict=True)
        x = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32)
        ported = build(module, x, args.api)
    except (PortError, ConversionError, OSError, ValueError) as err:  # ConversionError, PortError: ValueErrors
        if args.debug:
            raise
        return _fail(error_line(err))
    except RuntimeError as err:  # load_state_dict's missing/unexpected keys
        if args.debug:
            raise
        return _fail(f"{args.weights}: {err}")
    tmp = out.absolute().with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save(ported, tmp)
        model, variables = load(tmp)  # the checks run on the written model.py
        report = check(module, model, variables, x, args.seed)
        write_text(tmp / "report.json", json.dumps(
            {"torch_class": type(module).__name__, "target": args.target, "api": args.api,
             "input_shape_torch": list(shape),
             "input_shape_flax": list(model.INPUT_SHAPE), "parameters": sum(p.numel() for p in module.parameters()),
             "seed": args.seed, "versions": _versions(), **report.to_json()}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as err:  # a full or read-only disk
        if args.debug:
            raise
        return _fail(f"{error_line(err)} (nothing was written to {out})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{type(module).__name__} -> {out / 'model.py'} (class {type(model).__name__}), "
          f"{out / 'variables.safetensors'}, {out / 'report.json'}")
    print(report.table())
    print("all checks pass" if report.ok else "SOME CHECKS FAIL: see the table (and report.json)")
    return 0 if report.ok else 1


def _versions() -> dict[str, str]:
    return {"jax": jax.__version__, "flax": flax.__version__, "torch": torch.__version__,
            "jax_device": str(jax.devices()[0])}
