"""Pretrained weight files: torch-keyed .safetensors that say which network they are for, where they came from,
how to preprocess a photo for them and what their outputs are called (`python -m parity pretrained` writes them).

    model, variables, about = jaxcnn.load_pretrained("alexnet.safetensors")      # no torch needed
    logits = model.apply(variables, about.preprocessing("cat.jpg")[None])
    print(jaxcnn.imagenet.top_k(logits[0], about.classes))
"""

import dataclasses
import json
from pathlib import Path

import safetensors

from jaxcnn import registry
from jaxcnn.imagenet import Preprocessing
from jaxcnn.interchange import load_torch_weights

_PREFIX = "jaxcnn."


@dataclasses.dataclass(frozen=True)
class About:
    """What a weight file says of itself; None where it does not say (a plain torch-keyed file)."""
    model: str | None = None
    classes: tuple[str, ...] | None = None
    preprocessing: Preprocessing | None = None
    source: str | None = None  # the address (or file) the weights were converted from
    sha256: str | None = None  # of that source file

    def to_metadata(self) -> dict[str, str]:
        """safetensors metadata (str -> str) holding every field that is set."""
        fields = {"model": self.model, "source": self.source, "sha256": self.sha256,
                  "classes": json.dumps(list(self.classes)) if self.classes is not None else None,
                  "preprocessing": self.preprocessing.to_json() if self.preprocessing else None}
        return {"format": "pt", **{_PREFIX + k: v for k, v in fields.items() if v is not None}}


def read_about(path: str | Path) -> About:
    """What a torch-keyed .safetensors file says of itself (every field None for a file without jaxcnn's metadata).

    Raises:
        FileNotFoundError: no file at the path.
    """
    with safetensors.safe_open(str(path), "np") as f:
        metadata = f.metadata() or {}
    fields = {k[len(_PREFIX):]: v for k, v in metadata.items() if k.startswith(_PREFIX)}
    return About(model=fields.get("model"), source=fields.get("source"), sha256=fields.get("sha256"),
                 classes=tuple(json.loads(fields["classes"])) if "classes" in fields else None,
                 preprocessing=Preprocessing.from_json(fields["preprocessing"]) if "preprocessing" in fields
                 else None)


def load_pretrained(path: str | Path, model_name: str | None = None, **model_kwargs):
    """The network, its variables and what the file says of itself, from a torch-keyed .safetensors file.

    Reads what `python -m parity pretrained` writes (torchvision's ImageNet weights) and what a training run
    exports with `--export-torch x.safetensors`; no torch needed (docs/pretrained.md).

    Arguments:
        path: the .safetensors file.
        model_name: the registry network; default the file's own (`About.model`), which must then be recorded.
            A name that differs from the recorded one is refused.
        **model_kwargs: create_model arguments; num_classes defaults to the number of the file's class names.

    Returns:
        (model, variables, about): the linen module (`jaxcnn.create_model`), its {'params': ..., 'batch_stats':
        ...}, and the file's `jaxcnn.About` (model, classes, preprocessing, source, sha256; None where the file
        does not say). Where the file records its preprocessing, `about.preprocessing(photo)` gives one
        (H, W, 3) channels-last image x for `model.apply(variables, x[None])`, which returns (1, num_classes)
        logits.

    Raises:
        ValueError: the network is not recorded and not given, unknown, or not the file's.
        ConversionError: the weights do not fit the network (every difference listed).
        FileNotFoundError: no file at the path.
    """
    about = read_about(path)
    name = model_name or about.model
    if name is None:
        raise ValueError(f"{path} does not record its network: give the model name (e.g. --model alexnet)")
    if about.model and model_name and model_name != about.model:
        raise ValueError(f"{path} holds {about.model}'s weights, not {model_name}'s")
    if name not in registry.list_models():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(registry.list_models())}")
    if about.classes is not None:
        model_kwargs.setdefault("num_classes", len(about.classes))
    model = registry.create_model(name, **model_kwargs)
    return model, load_torch_weights(model, path), about
