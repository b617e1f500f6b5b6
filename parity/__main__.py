"""python -m parity [check] [--models ...] [--json PATH]   |   python -m parity convert --model NAME SRC DST

check: every registry model (or those named) through forward, gradient and round-trip checks
against its torch original; prints a table, exits non-zero if any fails.
convert: a checkpoint between torch (.pt/.pth, torch-keyed .safetensors) and Flax
(.safetensors, orbax directory); the direction follows from the source.
"""

import argparse
import dataclasses
import json
import sys

import jaxcnn
from parity import io, suite


def _check(args) -> int:
    unknown = sorted(set(args.models) - set(jaxcnn.list_models()))
    if unknown:
        print(f"unknown models {unknown}; available: {', '.join(jaxcnn.list_models())}", file=sys.stderr)
        return 2
    header = f"| {'model':<15} | {'parameters':>12} | {'forward max rel':>15} | {'gradient max rel':>16} | round trip |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    rows = []
    for name in args.models or jaxcnn.list_models():
        row = suite.check_model(name, args.seed)
        rows.append(row)
        mark = "bit-exact" if row.round_trip_exact else "DIFFERS"
        flag = "" if row.ok else "  <-- FAILED"
        print(f"| {name:<15} | {row.parameters:>12,} | {row.forward:>15.1e} | {row.gradient:>16.1e} | {mark:<10} |{flag}",
              flush=True)
    failed = [r.model for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed"
          " (forward <= 1e-5, gradient <= 1e-4, round trip bit-exact)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [dataclasses.asdict(r) | {"ok": r.ok} for r in rows], "failed": failed}, f, indent=2)
    return 1 if failed else 0


def _convert(args) -> int:
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    direction = io.convert_file(args.model, args.source, args.target, **kwargs)
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
    convert = commands.add_parser("convert", help="convert a checkpoint file between torch and Flax")
    convert.add_argument("--model", required=True, choices=jaxcnn.list_models())
    convert.add_argument("--model-kwargs", help="JSON of create_model keyword arguments, e.g. '{\"num_classes\": 10}'")
    convert.add_argument("source")
    convert.add_argument("target")
    args = parser.parse_args(argv)
    return _convert(args) if args.command == "convert" else _check(args)


if __name__ == "__main__":
    sys.exit(main())
