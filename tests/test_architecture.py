"""The three layers depend one way: jaxcnn <- train <- parity, and so do the subpackages inside train and parity.
jaxcnn and train need no torch."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxcnn", "train", "parity")
# What each layer may import of the others (and of torch), anywhere in its files.
ALLOWED = {"jaxcnn": set(), "train": {"jaxcnn"}, "parity": {"jaxcnn", "train", "torch", "torchvision"}}
# train's one use of torch: writing torch.save's own file format for `--export-torch x.pt`.
TORCH_IN_TRAIN = {("train/trainer/export.py", "export_torch")}


# Inside train and parity, each part imports only the parts before it. A module directly in train/ or parity/ is
# the command line ('train' / 'parity' here): it sits where the list puts it.
PARTS = {
    "train": ("train.data", "train.trainer", "train.inspection", "train.bench", "train"),
    "parity": ("parity.originals", "parity.checks", "parity.port", "parity.hub", "parity", "parity.bench"),
}


def _imports(path: Path, full: bool = False):
    """(module imported, enclosing function name or None) of every import statement in a file: the top-level
    package, or with `full` every dotted name the statement can mean (`from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name if full else a.name.split(".")[0], function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                if full:
                    found.extend((f"{child.module}.{a.name}", function) for a in child.names)
                found.append((child.module if full else child.module.split(".")[0], function))
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(tree, None)
    return found


def _part(package: str, dotted: str) -> str | None:
    """The part of PARTS[package] that the module or package `dotted` belongs to (None: not in `package`)."""
    names = dotted.split(".")
    if names[0] != package:
        return None
    if len(names) > 1 and (ROOT / names[0] / names[1]).is_dir():
        return ".".join(names[:2])
    return package


def _files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_the_layers_below_it(package):
    forbidden = (set(PACKAGES) | {"torch", "torchvision"}) - ALLOWED[package] - {package}
    wrong = []
    for path in _files(package):
        relative = path.relative_to(ROOT).as_posix()
        for module, function in _imports(path):
            if module == "torch" and (relative, function) in TORCH_IN_TRAIN:
                continue
            if module in forbidden:
                wrong.append(f"{relative}: imports {module}" + (f" in {function}()" if function else ""))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_project_import_hides_inside_a_function(package):
    """An import of jaxcnn/train/parity inside a function is how a cycle gets dodged; there is none."""
    hidden = [f"{path.relative_to(ROOT)}: {module} in {function}()" for path in _files(package)
              for module, function in _imports(path) if function and module in PACKAGES]
    assert not hidden, hidden


@pytest.mark.parametrize("package", PARTS)
def test_each_part_imports_only_the_parts_before_it(package):
    order = PARTS[package]
    directories = {p.parent.relative_to(ROOT).as_posix().replace("/", ".") for p in (ROOT / package).glob("*/__init__.py")}
    assert directories == set(order) - {package}, "a subpackage missing from PARTS, or a name there without a folder"
    wrong = []
    for path in _files(package):
        relative = path.relative_to(ROOT)
        mine = _part(package, ".".join(relative.with_suffix("").parts))
        for module, _ in _imports(path, full=True):
            theirs = _part(package, module)
            if theirs is not None and theirs != mine and module != package and order.index(theirs) > order.index(mine):
                wrong.append(f"{relative.as_posix()} ({mine}): imports {module} ({theirs}), which comes after it")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", [p for parts in PARTS.values() for p in parts])
def test_each_part_says_what_it_holds(package):
    init = ROOT / package.replace(".", "/") / "__init__.py"
    lines = (ast.get_docstring(ast.parse(init.read_text())) or "").split("\n")
    assert lines[0] and (len(lines) == 1 or not lines[1]), \
        f"{init.relative_to(ROOT)}: a docstring whose first line alone says what the package holds"


def test_jaxcnn_and_train_load_without_torch():
    """Importing every module of jaxcnn and train pulls in neither torch nor parity."""
    code = ("import importlib, pkgutil, sys, jaxcnn, train; "
            "[importlib.import_module(m.name) for p in (jaxcnn, train) "
            " for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') if not m.name.endswith('__main__')]; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'parity', 'torchvision')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checker_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from parity import convert\n")
    assert ("parity", "f") in _imports(bad) and ("os", None) in _imports(bad)


def test_the_checker_sees_an_import_from_a_later_part(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from train.trainer import fit\nfrom train import trainer\n")
    modules = {module for module, _ in _imports(bad, full=True)}
    assert {_part("train", m) for m in modules} == {"train.trainer", "train"}
    order = PARTS["train"]
    assert order.index(_part("train", "train.trainer.fit")) > order.index(_part("train", "train.data.mnist"))


def _mapped_folders(markdown: str) -> set[str]:
    """The folders the ```text tree of docs/architecture.md draws, as paths ('train/data')."""
    tree = markdown.split("```text\n", 1)[1].split("```", 1)[0]
    folders, stack = set(), []
    for line in tree.splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0].rstrip("/")
        stack[depth:] = [name]
        folders.add("/".join(stack))
    return folders


def test_the_documented_map_draws_the_folders_there_are():
    folders = {p.parent.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*")
               if p.is_file() and p.suffix in (".py", ".txt") and "__pycache__" not in p.parts}
    mapped = _mapped_folders((ROOT / "docs" / "architecture.md").read_text())
    assert mapped == folders, f"in the code, not on the map: {sorted(folders - mapped)}; " \
                              f"on the map, not in the code: {sorted(mapped - folders)}"
    assert {"train/data", "parity/originals/zoo"} <= _mapped_folders("```text\ntrain/\n  data/\nparity/\n  originals/\n"
                                                                     "    zoo/\n```")
