"""`pip install .` gives every package and command: the wheel, built from a copy of the clone and installed into a
fresh virtual environment, imports every module and answers each command's --help away from the source tree."""

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxcnn", "parity", "train")
LOCAL = {".git", ".venv", "runs", "out", "data", "build", ".pytest_cache", ".hypothesis", ".whl"}  # the clone's own


def _left_out(folder: str, names: list[str]) -> set[str]:
    """What the copy of the clone leaves out: what this clone made (at its top level only), and caches anywhere."""
    top = Path(folder) == ROOT
    return {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (top and n in LOCAL)}
# `python -m parity`'s subcommands, beside the modules that run as commands (found in the wheel, not listed here)
PARITY_SUBCOMMANDS = ("check", "convert", "port", "pretrained")

# Run by the fresh environment's python: imports every module the wheel holds, then runs each command with --help as
# `python -m` runs it; prints JSON.
PROBE = textwrap.dedent("""
    import contextlib, importlib, io, json, pkgutil, runpy, sys
    packages = [importlib.import_module(name) for name in sys.argv[1].split(",")]
    modules = sorted(m.name for p in packages for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")
                     if not m.name.endswith("__main__"))
    for name in modules:
        importlib.import_module(name)
    helps = {}
    for command in json.loads(sys.argv[2]):
        module, *args = command.split()
        sys.argv = [module, *args, "--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = "returned without exiting"
            except SystemExit as done:
                code = done.code
        helps[command] = [code, out.getvalue()]
    print(json.dumps({"files": {p.__name__: p.__file__ for p in packages}, "modules": modules, "helps": helps}))
""")


def _commands(wheel: Path) -> list[str]:
    """Every module the wheel holds that runs as a command (a __main__.py, or `if __name__ == "__main__":`)."""
    commands = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".py") or name.split("/")[0] not in PACKAGES:
                continue
            module = name[:-3].replace("/", ".")
            if module.endswith(".__main__"):
                commands.append(module.removesuffix(".__main__"))
            elif 'if __name__ == "__main__":\n' in archive.read(name).decode():
                commands.append(module)
    return sorted(commands) + [f"parity {sub}" for sub in PARITY_SUBCOMMANDS]


def test_the_wheel_holds_every_package_and_runs_every_command(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_left_out)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("jaxcnn-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        held = {Path(n).parent.as_posix() for n in archive.namelist() if n.endswith("/__init__.py")}
    packages = {p.parent.relative_to(ROOT).as_posix() for name in PACKAGES for p in (ROOT / name).rglob("__init__.py")}
    assert held == packages, f"packages not in the wheel: {sorted(packages - held)}; not in the clone: {sorted(held - packages)}"

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    # the dependencies are this environment's; a path line in a .pth adds only the folder, not the editable
    # install of this clone that the folder's own .pth files would bring
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")

    commands = _commands(wheel)
    done = subprocess.run([str(python), "-c", PROBE, ",".join(PACKAGES), json.dumps(commands)], cwd=tmp_path,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    for name, file in probe["files"].items():
        assert Path(file).is_relative_to(venv), f"{name} was imported from {file}, not from the installed wheel"
    assert {"parity.originals.zoo.resnet", "parity.bench.port", "train.data.mnist", "train.trainer.fit"} <= \
        set(probe["modules"])
    assert {"train.mnist", "parity", "parity.bench", "parity port"} <= set(commands)
    for command, (code, out) in probe["helps"].items():
        assert code == 0 and "usage:" in out, f"python -m {command} --help: exit {code!r}\n{out[-2000:]}"
