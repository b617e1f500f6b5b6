"""The three layers depend one way: jaxcnn <- train <- parity. jaxcnn and train need no torch."""

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
TORCH_IN_TRAIN = {("train/export.py", "export_torch")}


def _imports(path: Path):
    """(top-level module imported, enclosing function name or None) of every import statement in a file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name.split(".")[0], function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.append((child.module.split(".")[0], function))
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(tree, None)
    return found


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


def test_jaxcnn_and_train_load_without_torch():
    """Importing the whole of jaxcnn and train's commands pulls in neither torch nor parity."""
    code = ("import sys; import jaxcnn, train.mnist, train.inspect, train.run, train.fit, train.export, "
            "train.loopbench, train.layerbench; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'parity', 'torchvision')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checker_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from parity import convert\n")
    assert ("parity", "f") in _imports(bad) and ("os", None) in _imports(bad)
