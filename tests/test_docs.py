"""Every Python and shell block of README.md and docs/*.md runs, and every relative link resolves.

A doc's blocks run in order, like a notebook, in a throw-away copy of the clone: a temporary folder that links
to the repository's files (so `python -m train.mnist`, `.venv`, `Makefile` are there) with the MNIST files at
`../shared/data/mnist` beside it, as the guides assume. Shell blocks run with bash (`python` is the venv's),
Python blocks in this process, in one namespace per doc. A block is left out only when the line before its
fence says why (docs/architecture.md, "Writing docs"):

    <!-- needs: gpu -->       <!-- needs: network -->       <!-- not run: REASON -->

Where a doc's blocks read what a network block would have downloaded (torchvision's AlexNet weights), a stand-in
is made offline first: parity's twin writes the .pth that `parity pretrained --from` converts.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MNIST_DIR, mnist_available

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*(needs:\s*(gpu|network)|not run:[^>]*)\s*-->\s*$")
RUN = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell"}
MAX_NOT_RUN = 3  # blocks marked `not run` in all the docs together: the set-up commands themselves
WRITABLE = {"runs", "data", "out", ".pytest_cache", ".hypothesis"}  # never linked: what the blocks write


def blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, kind, code, marker) of each python/shell block; marker is the skip comment before it, if any."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        kind = RUN.get(match.group(1))
        if kind is None:
            continue
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        found.append((text[:match.start()].count("\n") + 1, kind, match.group(2), marker and marker.group(1)))
    return found


def test_blocks_are_found_and_exemptions_stay_few():
    every = [(path.name, line, marker) for path in DOCS for line, _, _, marker in blocks(path)]
    assert len([b for b in every if b[2] is None]) >= 20
    not_run = [b for b in every if b[2] and b[2].startswith("not run")]
    assert len(not_run) <= MAX_NOT_RUN, f"blocks marked `not run` (keep them few): {not_run}"
    # a marker that is misspelt is not a marker: the block would run, so an unknown `<!--` before a fence fails
    for path in DOCS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines[1:], 1):
            if line.startswith("```") and len(line) > 3 and lines[i - 1].startswith("<!--"):
                assert MARKER.search(lines[i - 1]), f"{path.name}:{i}: unknown marker {lines[i - 1]!r}"


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "jaxcnn"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in WRITABLE and entry.name != ".git":
            (clone / entry.name).symlink_to(entry)
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    (shared / "mnist").symlink_to(MNIST_DIR)
    return clone


def _environment(tmp_path: Path, cache: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache)  # the blocks' runs share compiled programs, not the user's cache
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    env["MPLBACKEND"] = "Agg"
    env.pop("JAXCNN_DATA_DIR", None)  # the docs say where the data is
    # the test process's 8 fake devices are its own: a block asks for devices itself where it means to
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if not f.startswith("--xla_force_host_platform_device_count"))
    return env


def _stand_ins(clone: Path, code: str) -> None:
    """What the blocks marked `needs: network` would have left, made offline, where the doc reads it."""
    if "alexnet.safetensors" in code:
        import torch

        from parity.originals import torchvision_models
        from parity.__main__ import main
        torch.manual_seed(0)
        pth = clone / "alexnet-owt-7be5be79.pth"
        torch.save(torchvision_models.AlexNet().state_dict(), pth)
        assert main(["pretrained", "alexnet", "--from", str(pth), "--out", str(clone / "alexnet.safetensors"),
                     "--trust-file"]) == 0
        pth.unlink()
    if "cat.jpg" in code:
        import numpy as np
        from PIL import Image
        pixels = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(clone / "cat.jpg")


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp().parent / "docs-xla-cache"  # shared by the xdist workers


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_runs(path, tmp_path, xla_cache, monkeypatch):
    runnable = [(line, kind, code) for line, kind, code, marker in blocks(path) if marker is None]
    if not runnable:
        pytest.skip(f"{path.name} has no block to run here (each is marked)")
    text = "\n".join(code for _, _, code in runnable)
    if "shared/data/mnist" in text and not mnist_available():
        pytest.skip(f"{path.name} reads MNIST: {MNIST_DIR} holds no IDX files")
    clone = _clone(tmp_path)
    _stand_ins(clone, text)
    env = _environment(tmp_path, xla_cache)
    monkeypatch.chdir(clone)
    monkeypatch.syspath_prepend(str(clone))  # as `python` started in that folder: the doc's own files import
    monkeypatch.setattr(sys, "argv", [str(path)])
    scope = {"__name__": f"docs_{path.stem}"}
    for line, kind, code in runnable:
        where = f"{path.relative_to(ROOT)}:{line}"
        if kind == "python":
            exec(compile(code, where, "exec"), scope)
            continue
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert done.returncode == 0, f"{where}: exit {done.returncode}\n{code}\n--- output ---\n{done.stdout[-4000:]}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces as -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_slug_is_githubs():
    assert slug("Porting torchvision's CNNs") == "porting-torchvisions-cnns"
    assert slug("`make test`, then `make train`") == "make-test-then-make-train"
    assert slug("Multi-device and multi-host") == "multi-device-and-multi-host"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target}: no {resolved.relative_to(ROOT) if ROOT in resolved.parents else resolved}")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def test_every_guide_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in DOCS[1:] if f"(docs/{p.name})" not in readme] == []
