"""python -m parity [check] [--models ...] [--api nnx] [--json PATH]   |   python -m parity convert --model NAME SRC DST
   |   python -m parity port path/to/file.py:ClassName --input-shape N,C,H,W --out DIR
   |   python -m parity pretrained NAME --out FILE.safetensors

check: every registry model (or those named; --api nnx: their NNX networks) through forward, gradient and
round-trip checks against its torch original; prints a table, exits non-zero if any fails.
convert: a checkpoint between torch (.pt/.pth, torch-keyed .safetensors) and Flax
(.safetensors, orbax directory); the direction follows from the source.
port: your own torch nn.Module as a readable Flax module (DIR/model.py) with its weights and a parity report.
pretrained: torchvision's ImageNet weights (alexnet, vgg16, vgg16_bn, vgg19, vgg19_bn), verified, as a
torch-keyed .safetensors that jaxcnn.load_pretrained reads without torch.
"""

import argparse
import dataclasses
import json
import platform
import sys

import flax
import jax
import torch

import jaxcnn
from jaxcnn.files import error_line
from parity.checks import device, io, suite
from parity.hub import pretrained
from parity.port import cli as port_cli


COLUMNS = (("model", 15), ("parameters", 12), ("forward", 8), ("f64 flax", 8), ("f64 torch", 9), ("gradient", 8),
           ("f64 flax", 8), ("f64 torch", 9), ("criterion (fwd / grad)", 33), ("round trip", 10))


def _line(cells) -> str:
    return "| " + " | ".join(f"{c:<{w}}" if i in (0, 8, 9) else f"{c:>{w}}"
                             for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS))) + " |"


def _check(args) -> int:
    unknown = sorted(set(args.models) - set(jaxcnn.list_models()))
    if unknown:
        print(f"unknown models {unknown}; available: {', '.join(jaxcnn.list_models())}", file=sys.stderr)
        return 2
    try:
        where = device.resolve(args.device or device.default())
    except device.DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"torch and Flax ({args.api}) on {where.describe()}; float64 referee: torch on the CPU")
    print(_line(name for name, _ in COLUMNS))
    print("|" + "|".join("-" * (w + 2) for _, w in COLUMNS) + "|")
    rows = []
    for name in args.models or jaxcnn.list_models():
        row = suite.check_model(name, args.seed, where, args.api)
        rows.append(row)
        print(_line([name, f"{row.parameters:,}", f"{row.forward:.1e}", f"{row.forward_float64_flax:.1e}",
                     f"{row.forward_float64_torch:.1e}", f"{row.gradient:.1e}", f"{row.gradient_float64_flax:.1e}",
                     f"{row.gradient_float64_torch:.1e}", f"{row.forward_criterion} / {row.gradient_criterion}",
                     "bit-exact" if row.round_trip_exact else "DIFFERS"]) + ("" if row.ok else "  <-- FAILED"),
              flush=True)
    failed = [r.model for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed (forward 1e-5, gradient 1e-4: Flax within "
          "that of torch, or no further from float64 than max(that, 2 x torch's distance); round trip bit-exact)")
    if args.json:
        report = {"device": where.name, "device_name": where.describe(), "versions": versions(),
                  "rows": [dataclasses.asdict(r) | {"ok": r.ok} for r in rows], "failed": failed}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if failed else 0


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "torch": torch.__version__, "cuda (torch)": str(torch.version.cuda)}


def _convert(args) -> int:
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    try:
        direction = io.convert_file(args.model, args.source, args.target, overwrite=args.overwrite, **kwargs)
    except (OSError, ValueError) as err:  # ConversionError, FileExistsError, FileNotFoundError, a full disk ...
        if args.debug:
            raise
        print(f"error: {error_line(err)}\n(nothing was written to {args.target}; --debug shows the traceback)",
              file=sys.stderr)
        return 2
    print(f"{args.model}: {direction}: {args.source} -> {args.target}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="forward, gradient and round-trip checks (the default)")
    for p in (parser, check):
        p.add_argument("--models", nargs="*", default=[], help="registry names (default: all)")
        p.add_argument("--json", help="also write the table as JSON here")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--api", choices=jaxcnn.APIS, default="linen",
                       help="the Flax networks checked: linen modules, or the NNX networks (create_model(api='nnx'))")
        p.add_argument("--device", choices=device.NAMES,
                       help="where torch and Flax both run (default: the GPU when both see one, else the CPU)")
    convert = commands.add_parser("convert", help="convert a checkpoint file between torch and Flax")
    convert.add_argument("--model", required=True, choices=jaxcnn.list_models())
    convert.add_argument("--model-kwargs", help="JSON of create_model keyword arguments, e.g. '{\"num_classes\": 10}'")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing target file (or orbax checkpoint directory)")
    convert.add_argument("--debug", action="store_true", help="show the traceback of an error")
    convert.add_argument("source")
    convert.add_argument("target")
    port_cli.add_parser(commands)
    pretrained.add_parser(commands)
    args = parser.parse_args(argv)
    device.deterministic_xla()  # before JAX starts its backends
    commands = {"convert": _convert, "port": port_cli.run, "pretrained": pretrained.run}
    return commands.get(args.command, _check)(args)


if __name__ == "__main__":
    sys.exit(main())
