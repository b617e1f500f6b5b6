"""One config per registry network, registered beside its definition (as timm's per-model configs).

Everything that `train` and `parity` need to know about a network beyond its layers is read from here:
what its notebook fed it, how it was trained, how its torch original names its submodules, how the
parity suite checks it.
"""

import dataclasses
from typing import Any, Mapping

LOSSES = ("cross_entropy", "mse")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Arguments:
        preprocess: how its notebook turned uint8 pixels into its input, a key of `jaxcnn.preprocess.PREPROCESS`
            ('raw' 0..255 floats, 'unit' ToTensor's [0, 1], 'normalize' Normalize(0.5, 0.5) of those); None: the
            notebook fed it no images (train.mnist then normalizes; parity draws standard normal inputs).
        loss: 'cross_entropy' (a classifier) or 'mse' (a regressor, or a network whose output is a feature map).
        recipe: the notebook's training recipe (optimizer, lr, batch_size, epochs, weight_decay) and the `data` it
            trained on (a train.data.sources name: 'mnist', 'sun'); the trainer starts from it on that data.
        torch_sequentials: the torch attributes that are `nn.Sequential`s, whose children are numbered
            ('conv_stack' -> state_dict 'conv_stack.0.weight', Flax module 'conv_stack_0'); '' for a network that
            is a bare `nn.Sequential` ('0.weight', Flax 'layers_0').
        gradient_check: parity's gradient check of this network: `model_kwargs` to build it with and the input
            `size` (for networks that take any size), where the defaults' inputs have near-kinks (ReLU inputs at
            zero, max-pool ties, where float32 rounding decides where the gradient goes).
    """
    preprocess: str | None = None
    loss: str = "cross_entropy"
    recipe: Mapping[str, Any] | None = None
    torch_sequentials: tuple[str, ...] = ()
    gradient_check: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        unknown = set(self.gradient_check) - {"model_kwargs", "size"}
        if unknown:
            raise ValueError(f"gradient_check takes 'model_kwargs' and 'size', not {sorted(unknown)}")
