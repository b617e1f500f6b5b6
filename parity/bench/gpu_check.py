"""python -m parity.bench.gpu_check --out report.json: the GPU checks of the project in one command, one JSON report.

Sections, each written to the report as soon as it ends (a run cut short keeps what it finished):
- parity: every registry network, torch and Flax on the device, each judged against the float64 referee;
- port: parity.port on the registry's torch originals, the ported Flax modules on the device (torch on the CPU),
  every check of `python -m parity port` (outputs, gradients, train mode, round trip);
- port_zoo: parity.port on torchvision's CNN families (parity.originals.zoo's small versions): every check, the Flax side on
  the device, and the ported module under jit and vmap at another batch size against torch;
- port_torchvision: the same on torchvision's own models (weights=None) where torchvision imports (the GPU
  machine's image has it);
- gradient_diagnosis: VGG-19's gradient (and that of any network whose check failed) taken apart: per-tensor
  distances of each side from float64, near-kinks at growing gaps, the same check in float64 on the device,
  and Flax's gradient on the CPU;
- bench: python -m parity.bench's rows (torch eager and torch.compile on the same device, notebooks' loops), the
  MNIST networks and notebook 003's sun_regressor and CIFAR-10's cifar_conv_mlp (goal: Flax 5x torch eager),
  and fine-tuning AlexNet and VGG-16 on a photo folder (loader, step, pipeline; the loader must keep up);
- one_epoch_99: ONE_EPOCH_RECIPE from three initialisation seeds;
- fast_start: `python -m train.mnist --recipe one_epoch_99` twice with an empty compilation cache (cold, warm):
  wall seconds, seconds from process start to the epoch line, compile seconds, accuracy.

Not yet timed on a GPU: run the sections one by one with --sections where the device time is short. On a machine without a GPU it checks the same on the CPU; --quick trims every
section to a smoke test (for trying the command itself). The MNIST files: --data-dir, else $JAXCNN_DATA_DIR,
else data/mnist in the repository (git-ignored: copy them there to carry them to a bare machine).
"""

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
from flax import nnx

import jaxcnn
from parity import port
from parity.__main__ import versions
from parity.bench import finetune, throughput
from parity.checks import check, device, suite, training
from parity.originals import zoo
from train.data import mnist

REPO = Path(__file__).resolve().parents[1]


def zoo_families() -> list[str]:
    return list(zoo.FAMILIES)


def parity_section(where, models: list[str]) -> dict:
    rows = []
    for name in models:
        start = time.perf_counter()
        row = suite.check_model(name, 0, where)
        rows.append(dataclasses.asdict(row) | {"ok": row.ok, "seconds": time.perf_counter() - start})
    return {"rows": rows, "failed": [r["model"] for r in rows if not r["ok"]]}


def port_section(where, models: list[str]) -> dict:
    rows = {}
    for name in models:
        start = time.perf_counter()
        with device.placed(where):
            module, model = suite.random_original(name)
            x = check.sample_input(name, suite.input_shape(model, 2), 0)
            ported = port.build(module, x)
            rows[name] = port.check(module, ported.module, ported.variables, x).to_json()
        rows[name]["seconds"] = time.perf_counter() - start
    return {"rows": rows, "failed": [n for n, r in rows.items() if not r["ok"]]}


def zoo_section(where, names: list[str], batch: int = 4) -> dict:
    """parity.port on torchvision's CNN families (parity.originals.zoo's small versions): every check of the port with the
    Flax side on the device, and the ported module under jit and vmap on the device at other batch sizes against
    torch on the CPU."""
    import numpy as np
    import torch

    rows = {}
    for name in names:
        start = time.perf_counter()
        torch.manual_seed(0)
        module = zoo.tiny(name)
        size = zoo.input_size(name)
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        with device.placed(where):
            ported = port.build(module, x)
            report = port.check(module, ported.module, ported.variables, x)
            row = report.to_json() | {"ok": zoo.passes(name, report)}
            other = np.random.default_rng(1).standard_normal((batch + 3, 3, size, size)).astype(np.float32)
            with torch.no_grad():
                expected = module.eval()(torch.from_numpy(other)).numpy()
            graphdef, state = nnx.split(ported.module)  # the NNX port, as a pure function of its state
            apply = lambda state, x: nnx.merge(graphdef, state)(x)  # noqa: E731
            got = jax.jit(apply)(state, np.transpose(other, (0, 2, 3, 1)))
            mapped = jax.vmap(lambda v: apply(state, v))(
                np.transpose(other, (0, 2, 3, 1)).reshape(1, *other.shape[:1], size, size, 3))[0]
        scale = float(np.max(np.abs(expected))) or 1.0
        row["jit_other_batch"] = float(np.max(np.abs(np.asarray(got) - expected))) / scale
        row["vmap"] = float(np.max(np.abs(np.asarray(mapped) - expected))) / scale
        row["ok"] = row["ok"] and row["jit_other_batch"] < 1e-4 and row["vmap"] < 1e-4
        rows[name] = row | {"seconds": time.perf_counter() - start}
    return {"rows": rows, "failed": [n for n, r in rows.items() if not r["ok"]]}


def torchvision_section(where, names: list[str]) -> dict:
    """parity.port on torchvision's own models (weights=None, 2x3x64x64; inception_v3 at 96), where torchvision
    imports: port and every check, the Flax side on the device."""
    try:
        import torchvision
    except Exception as err:  # the CPU wheel of these machines: torchvision does not import
        return {"skipped": f"torchvision does not import: {err}"}
    import numpy as np
    import torch
    rows = {}
    for name in names:
        start = time.perf_counter()
        torch.manual_seed(0)
        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        module = getattr(torchvision.models, name)(weights=None, **kwargs)
        size = 96 if name == "inception_v3" else 64
        x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
        with device.placed(where):
            built = time.perf_counter()
            ported = port.build(module, x)
            build_seconds = time.perf_counter() - built
            rows[name] = port.check(module, ported.module, ported.variables, x).to_json()
        rows[name] |= {"build_seconds": build_seconds, "seconds": time.perf_counter() - start,
                       "model_py_lines": len(ported.source.splitlines())}
    return {"rows": rows, "failed": [n for n, r in rows.items() if not r["ok"]]}


def gradient_diagnosis(where, name: str, seed: int = 0) -> dict:
    """Which side departs from float64 in `name`'s gradient check, and why (see module docstring)."""
    def run(on, double=False):
        with device.placed(on):
            module, model, variables, x, targets, kind = suite.gradient_case(name, seed, on)
            report = training.compare_gradients(module, model, variables, x, targets, kind, double=double)
            kinks = {f"{gap:.0e}": training.near_kinks(module, x, gap=gap) for gap in (1e-6, 1e-5, 1e-4, 1e-3)}
        worst = sorted(report.verdicts.items(), key=lambda kv: -kv[1].flax_torch)[:8]
        return {"verdict": dataclasses.asdict(report.verdict), "ok": report.verdict.ok,
                "loss": [report.loss_torch, report.loss_flax, report.loss_float64],
                "worst_tensors": {k: dataclasses.asdict(v) for k, v in worst}, "near_kinks": kinks}

    result = {"on_device": run(where), "on_device_float64": run(where, double=True)}
    if where.name != "cpu":
        result["on_cpu"] = run(device.resolve("cpu"))
    return result


def bench_section(dataset, quick: bool) -> dict:
    """The MNIST rows, sun_regressor (256x256x3) and cifar_conv_mlp on data generated in their formats, and the
    fine-tuning rows (AlexNet, VGG-16 at 224 from a folder of generated photos, 8 loader workers)."""
    with contextlib.ExitStack() as stack:
        course = throughput.course_data(stack, sun_images=96 if quick else 256, cifar_images=2000 if quick else 10_000)
        if quick:
            results = throughput.benchmark(dataset.subset(2000, 500), steps=5, repeats=1, with_compile=False,
                                      time_to_99=False, notebook_steps=5, course=course)
        else:
            results = throughput.benchmark(dataset, steps=300, repeats=3, with_compile=True, time_to_99=False,
                                      notebook_steps=300, course=course)
    results["finetune"] = finetune.finetune_rows(["alexnet"] if quick else ["alexnet", "vgg16"], batch=32,
                                                       steps=2 if quick else 10, repeats=1 if quick else 3,
                                                       photos=128 if quick else 1024, workers=2 if quick else 8)
    return results


def one_epoch_section(dataset, quick: bool) -> dict:
    return throughput.one_epoch_99(dataset.subset(2000, 500) if quick else dataset, seeds=(0,) if quick else (0, 1, 2))


def fast_start_section(data_dir: str, out: Path, quick: bool) -> dict:
    """Two identical train.mnist runs of the one-epoch recipe sharing an emptied compilation cache."""
    cache = out / "compile_cache"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    runs = {}
    for label in ("cold", "warm"):
        run_dir = out / f"fast_start_{label}"
        args = [sys.executable, "-m", "train.mnist", "--recipe", "one_epoch_99", "--data-dir", data_dir,
                "--out", str(run_dir), "--overwrite", "--no-progress"] + (["--train-subset", "2000"] if quick else [])
        start = time.perf_counter()
        done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - start
        if done.returncode:
            runs[label] = {"error": done.stderr[-2000:]}
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs[label] = {"wall_seconds": wall, "seconds_since_start_at_epoch_1": metrics["epochs"][0]["seconds_since_start"],
                       "test_accuracy": metrics["final"]["test_accuracy"]} | {
            k: metrics["final"][k] for k in ("train_seconds", "train_compile_seconds", "eval_compile_seconds",
                                             "init_seconds")}
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON report (its folder also holds the runs)")
    parser.add_argument("--data-dir", help="the four MNIST IDX .gz files")
    parser.add_argument("--device", choices=["cpu", "gpu"], help="default: the GPU when both frameworks see one")
    parser.add_argument("--quick", action="store_true", help="a smoke test of every section (minutes on a CPU)")
    parser.add_argument("--sections", nargs="*", help="only these sections")
    args = parser.parse_args(argv)

    device.deterministic_xla()  # before JAX starts its backends (imports do not start them)

    data_dir = args.data_dir or os.environ.get(mnist.DATA_DIR_ENV) or str(REPO / "data" / "mnist")
    where = device.resolve(args.device or device.default())
    out = Path(args.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": where.name, "device_name": where.describe(), "versions": versions(), "quick": args.quick,
              "sections": {}, "errors": {}, "seconds": {}}

    def save():
        out.write_text(json.dumps(report, indent=2, default=float))

    models = ["lenet5_mnist", "mnist_cnn", "vgg19"] if args.quick else jaxcnn.list_models()
    dataset = mnist.load("mnist", data_dir)
    sections = {
        "parity": lambda: parity_section(where, models),
        "port": lambda: port_section(where, [m for m in models if not m.startswith("vgg") or m == "vgg16_bn"]),
        "port_zoo": lambda: zoo_section(where, ["resnet18", "mobilenet_v2", "convnext_tiny"] if args.quick
                                        else list(zoo_families())),
        "port_torchvision": lambda: torchvision_section(where, ["resnet50", "mobilenet_v2"] if args.quick else [
            "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x1_0",
            "convnext_tiny", "densenet121", "regnet_y_400mf", "googlenet", "inception_v3"]),
        "gradient_diagnosis": lambda: {name: gradient_diagnosis(where, name) for name in sorted(
            {"vgg19"} | set(report["sections"].get("parity", {}).get("failed", [])))},
        "bench": lambda: bench_section(dataset, args.quick),
        "one_epoch_99": lambda: one_epoch_section(dataset, args.quick),
        "fast_start": lambda: fast_start_section(data_dir, out.parent, args.quick),
    }
    for name, run in sections.items():
        if args.sections and name not in args.sections:
            continue
        start = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        try:
            report["sections"][name] = run()
        except Exception:  # a failed section is reported, and the others still run
            report["errors"][name] = traceback.format_exc()[-4000:]
        report["seconds"][name] = time.perf_counter() - start
        save()
    jax.clear_caches()
    failed = {name: section["failed"] for name, section in report["sections"].items()
              if isinstance(section, dict) and section.get("failed")}
    print(f"report: {out}; errors in {sorted(report['errors']) or 'none'}; failed checks in "
          f"{', '.join(f'{k} ({len(v)})' for k, v in failed.items()) or 'none'}")
    return 1 if report["errors"] or failed else 0


if __name__ == "__main__":
    sys.exit(main())
