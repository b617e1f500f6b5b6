"""python -m parity pretrained NAME --out FILE.safetensors: torchvision's published ImageNet weights for jaxcnn.

    python -m parity pretrained alexnet --out alexnet.safetensors              # download (cached), verify, convert
    python -m parity pretrained vgg16 --from vgg16-397923af.pth --out vgg16.safetensors     # offline

The output is the torch state_dict unchanged (torch keys and layouts) as .safetensors, with the network's name,
the source and its sha256, ImageNet's preprocessing and the 1000 class names in its header:
`jaxcnn.load_pretrained(FILE)` reads it without torch.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import jaxcnn
from jaxcnn.files import error_line
from jaxcnn.imagenet import CATEGORIES, IMAGENET
from jaxcnn.interchange import ConversionError, DROPPED
from parity.checks import io
from parity.hub import fetch


@dataclasses.dataclass(frozen=True)
class Published:
    """A torchvision weight file: its address, and its sha256 as torchvision publishes it (the first eight hex
    digits, in the file's name; torch.hub's check_hash compares those)."""
    url: str
    sha256: str


PUBLISHED = {
    "alexnet": Published("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79"),
    "vgg16": Published("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
    "vgg16_bn": Published("https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", "6c64b313"),
    "vgg19": Published("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d"),
    "vgg19_bn": Published("https://download.pytorch.org/models/vgg19_bn-c79401a0.pth", "c79401a0"),
}


class PretrainedError(ValueError):
    """The weights cannot be fetched or converted; the message says why and what to do."""


def _keys(name: str) -> set[str]:
    return {k for k in jaxcnn.torch_keys(jaxcnn.create_model(name)) if not k.endswith(DROPPED)}


def _whose(keys: set[str]) -> str | None:
    """The published network whose state_dict has exactly these keys (num_batches_tracked aside)."""
    keys = {k for k in keys if not k.endswith(DROPPED)}
    return next((name for name in PUBLISHED if _keys(name) == keys), None)


def convert(name: str, source: str | Path, out: str | Path, origin: str, digest: str,
            overwrite: bool = False) -> None:
    """Reads torch weights from `source` (torch.load weights_only), loads them strictly into jaxcnn's `name` and
    writes them with their About (origin: the address or file they came from, digest: its sha256) to `out`."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise PretrainedError(f"--out must be a .safetensors file, not {out.name}")
    if out.exists() and not overwrite:
        raise PretrainedError(f"{out} exists; give --overwrite to replace it")
    state = io.load_torch_state(source)
    model = jaxcnn.create_model(name)
    try:
        jaxcnn.load_torch_weights(model, state)
    except ConversionError as err:
        other = _whose(set(state))
        hint = f"it holds {other}'s weights: give {other} as NAME" if other else str(err)
        raise PretrainedError(f"{source} is not a state_dict of torchvision's {name}; {hint}") from err
    about = jaxcnn.About(model=name, classes=CATEGORIES, preprocessing=IMAGENET, source=origin, sha256=digest)
    jaxcnn.write_torch_safetensors(state, out, metadata=about.to_metadata())


def pretrained(name: str, out: str | Path, from_file: str | Path | None = None, trust_file: bool = False,
               overwrite: bool = False, cache: Path | None = None) -> Path:
    """Fetches (or takes `from_file`), verifies and converts torchvision's weights of `name`; returns the source."""
    if name not in PUBLISHED:
        raise PretrainedError(f"no published weights for {name!r}; available: {', '.join(PUBLISHED)}")
    published = PUBLISHED[name]
    if Path(out).exists() and not overwrite:  # before any download
        raise PretrainedError(f"{out} exists; give --overwrite to replace it")
    if from_file is not None:
        if not Path(from_file).is_file():
            raise FileNotFoundError(f"no such file: {from_file}")
        source, digest = Path(from_file), fetch.verify(from_file, published.sha256, trust=trust_file)
        origin = str(Path(from_file).resolve())
    else:
        source, digest = fetch.fetch(published.url, published.sha256, cache)
        origin = published.url
    convert(name, source, out, origin, digest, overwrite)
    return source


def add_parser(commands) -> None:
    p = commands.add_parser("pretrained", help="torchvision's ImageNet weights as a torch-keyed .safetensors",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PUBLISHED))
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--from", dest="from_file", help="a downloaded .pth instead of the download (hash checked)")
    p.add_argument("--trust-file", action="store_true", help="convert --from FILE whatever its sha256")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def run(args) -> int:
    try:
        source = pretrained(args.name, args.out, args.from_file, args.trust_file, args.overwrite)
    except (OSError, ValueError) as err:  # PretrainedError, FetchError, a torch.load failure, a full disk ...
        if args.debug:
            raise
        print(f"error: {error_line(err)}\n(nothing was written to {args.out}; --debug shows the traceback)",
              file=sys.stderr)
        return 2
    about = jaxcnn.read_about(args.out)
    print(f"{args.name}: {source} (sha256 {about.sha256}) -> {args.out}\n"
          f"  {len(about.classes)} classes, preprocessing {about.preprocessing}")
    return 0
