"""`python -m parity.bench.port`: parity.port over torchvision's CNN families (parity.originals.zoo).

Per family, its small version (`zoo.tiny(name)`, the same block classes at narrow widths) is ported and checked
(`port.check`: eval and train mode, each against float64); the row gives each check's Flax-vs-torch difference and
the worst (train mode of zoo.FLOAT32_EVAL_ONLY is reported, not judged: see there). `--build NAME...` times the
port of the full-size networks (trace, emit, build, convert; no checks) and counts the lines of their model.py.
`--timm [FAMILY...]` does the same for timm's CNN families (parity.originals.timm_zoo.FAMILIES; all when none is
named): per family its network ported (timed) and checked, the worst check and the lines of its model.py; it needs
timm (`pip install -e '.[timm]'`). `--out FILE` writes the rows as JSON.
"""

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch

from jaxcnn.files import write_text
from parity import port
from parity.originals import timm_zoo, zoo

BUILD = ("resnet18", "resnet50", "densenet121", "mobilenet_v2")


def _example(name: str, batch: int = 2) -> np.ndarray:
    size = zoo.input_size(name)
    return np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)


def family_row(name: str) -> dict:
    """The port of zoo.tiny(name) and its parity report: per check the Flax-torch difference and criterion."""
    torch.manual_seed(0)
    module, x = zoo.tiny(name), _example(name)
    start = time.perf_counter()
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    checks = {k: {"flax_torch": v.flax_torch, "criterion": v.criterion} for k, v in report.verdicts.items()}
    judged = list(zoo.judged(name, report.verdicts))
    worst = max(judged, key=lambda k: checks[k]["flax_torch"])
    return {"family": name, "ok": zoo.passes(name, report), "judged": judged,
            "round_trip_exact": report.round_trip_exact, "checks": checks, "worst_check": worst,
            "worst_flax_torch": checks[worst]["flax_torch"], "seconds": time.perf_counter() - start}


def build_row(name: str) -> dict:
    """Seconds to port the full-size network (no checks), and the size of its model.py."""
    torch.manual_seed(0)
    module, x = zoo.FAMILIES[name](), _example(name)
    start = time.perf_counter()
    ported = port.build(module, x)
    seconds = time.perf_counter() - start
    return {"model": name, "build_seconds": seconds, "model_py_lines": len(ported.source.splitlines()),
            "classes": ported.source.count("\nclass ")}


def timm_row(family: str) -> dict:
    """timm_zoo.FAMILIES[family] ported (seconds to build: trace, emit, build, convert) and checked."""
    example = timm_zoo.FAMILIES[family]
    torch.manual_seed(0)
    module, x = timm_zoo.network(family), timm_zoo.example_input(family)
    start = time.perf_counter()
    ported = port.build(module, x)
    built = time.perf_counter() - start
    report = port.check(module, ported.module, ported.variables, x)
    worst = max(report.verdicts, key=lambda k: report.verdicts[k].flax_float64 / report.verdicts[k].tolerance)
    verdict = report.verdicts[worst]
    return {"family": family, "network": example.network, "input": [example.batch, 3, example.size, example.size],
            "ok": report.ok, "worst_check": worst, "flax_torch": verdict.flax_torch,
            "flax_float64": verdict.flax_float64, "torch_float64": verdict.torch_float64,
            "criterion": verdict.criterion, "build_seconds": built,
            "check_seconds": time.perf_counter() - start - built, "model_py_lines": len(ported.source.splitlines())}


def _timm_table(families: list[str]) -> list[dict]:
    print(f"| {'family':<20} | {'network':<22} | {'worst check':<24} | {'flax-f64':>8} | {'torch-f64':>9} | "
          f"{'ok':<3} | {'build s':>7} | {'lines':>5} |")
    rows = []
    for family in families:
        try:
            row = timm_row(family)
        except port.PortError as err:
            row = {"family": family, "network": timm_zoo.FAMILIES[family].network, "ok": False,
                   "refused": str(err).splitlines()[0]}
            print(f"| {family:<20} | {row['network']:<22} | refused: {row['refused'][:80]}", flush=True)
            rows.append(row)
            continue
        rows.append(row)
        print(f"| {family:<20} | {row['network']:<22} | {row['worst_check']:<24} | {row['flax_float64']:>8.1e} | "
              f"{row['torch_float64']:>9.1e} | {'yes' if row['ok'] else 'NO':<3} | {row['build_seconds']:>7.1f} | "
              f"{row['model_py_lines']:>5} |", flush=True)
        jax.clear_caches()  # each family's compiled checks hold its weights: 66 of them fill the memory
        gc.collect()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench.port", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=list(zoo.FAMILIES), choices=list(zoo.FAMILIES),
                        metavar="NAME", help="the families to port and check (default: all)")
    parser.add_argument("--build", nargs="*", default=list(BUILD), choices=list(zoo.FAMILIES), metavar="NAME",
                        help=f"full-size networks to time the port of (default: {' '.join(BUILD)})")
    parser.add_argument("--timm", nargs="*", metavar="FAMILY", choices=list(timm_zoo.FAMILIES),
                        help="port and check timm's CNN families instead (all when none is named)")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.timm is not None:
        rows = _timm_table(args.timm or list(timm_zoo.FAMILIES))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_text(args.out, json.dumps({"timm": rows}, indent=1))
        return 0 if all(r["ok"] for r in rows) else 1
    families, builds = [], []
    print(f"| {'family':<20} | {'worst check':<24} | {'flax-torch':>10} | {'ok':<3} | {'s':>5} |")
    for name in args.families:
        row = family_row(name)
        families.append(row)
        print(f"| {name:<20} | {row['worst_check']:<24} | {row['worst_flax_torch']:>10.1e} | "
              f"{'yes' if row['ok'] else 'NO':<3} | {row['seconds']:>5.1f} |", flush=True)
    for name in args.build:
        row = build_row(name)
        builds.append(row)
        print(f"{name}: ported in {row['build_seconds']:.1f} s, model.py {row['model_py_lines']} lines, "
              f"{row['classes']} classes", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps({"families": families, "builds": builds}, indent=1))
    return 0 if all(r["ok"] for r in families) else 1


if __name__ == "__main__":
    sys.exit(main())
