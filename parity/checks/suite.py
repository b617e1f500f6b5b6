"""The parity suite behind `python -m parity`: forward, gradient and round-trip checks per registry model."""

import copy
import dataclasses
import functools

import numpy as np
import torch
from flax import nnx

import jaxcnn
from parity.checks import check, convert, device, referee, training
from parity.originals import torch_models

# Inputs of the checks: size-agnostic networks (VGG, AlexNet) at 64x64 (VGG's adaptive pool then
# upsamples 2x2 -> 7x7); gradients on inputs without near-kinks (ReLU inputs near zero, max-pool
# near-ties), at the model kwargs and input size of each network's config (jaxcnn.ModelConfig.gradient_check).
AGNOSTIC_SIZE = 64


def gradient_settings(name: str) -> tuple[dict, int]:
    """(model kwargs, input size for networks that take any size) of the gradient check of `name`."""
    settings = jaxcnn.model_config(name).gradient_check
    return dict(settings.get("model_kwargs", {})), settings.get("size", AGNOSTIC_SIZE)


def input_shape(model, batch: int, size: int = AGNOSTIC_SIZE) -> tuple[int, ...]:
    """NCHW shape: the model's own input size, or `size` for networks that take any size."""
    h, w, c = model.input_shape
    if not model.fixed_size:
        h, w = min(h, size), min(w, size)
    return (batch, c, h, w)


def move_batchnorm_statistics(module: torch.nn.Module, name: str, shape: tuple[int, ...], seed: int = 100) -> None:
    """Train-mode passes so BatchNorm running statistics leave their defaults (0 and 1)."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return
    module.train()
    with torch.no_grad():
        for step in range(3):
            module(check.to_torch(check.sample_input(name, shape, seed=seed + step)) * 2 + 0.5)
    module.eval()


@functools.lru_cache(maxsize=3)
def _built_original(name: str, seed: int, kwargs: tuple) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    module = torch_models.create(name, **dict(kwargs))
    move_batchnorm_statistics(module, name, input_shape(jaxcnn.create_model(name, **dict(kwargs)), 2))
    return module, torch.get_rng_state()


def random_original(name: str, seed: int = 0, api: str = "linen", **kwargs):
    """(torch original with random weights and moved BatchNorm statistics, jaxcnn model: the linen module, or
    with api="nnx" a new NNX network, its weights to be loaded: `flax_weights`).

    Each call returns a module of its own; the last few built are kept and copied (VGG's torch initialisation
    takes seconds, a copy a fraction of one), and torch's random state is left as building it leaves it."""
    module, rng_state = _built_original(name, seed, tuple(sorted(kwargs.items())))
    torch.set_rng_state(rng_state)
    model = jaxcnn.create_model(name, api, rngs=nnx.Rngs(seed) if api == "nnx" else None, **kwargs)
    return copy.deepcopy(module), model


def flax_weights(module: torch.nn.Module, model, x_nchw) -> dict | None:
    """The torch module's weights for the jaxcnn `model`, as the checks take them: a linen module's variables,
    or None once an NNX network holds them (loaded in place). x_nchw: the input (or its shape) to trace with."""
    variables = convert.torch_to_flax(module, model, x_nchw)
    return None if isinstance(model, nnx.Module) else variables


def kink_free_input(module, name: str, shape: tuple[int, ...], seed: int = 0, train: bool = False,
                    tries: int = 40) -> np.ndarray:
    """The first sample input (seeds seed, seed+1, ...) without near-kinks in that mode."""
    for s in range(seed, seed + tries):
        x = check.sample_input(name, shape, s)
        if training.near_kinks(module, x, train=train) == 0:
            return x
    raise AssertionError(f"no input without near-kinks for {name} {shape} in {tries} seeds")


@dataclasses.dataclass
class Row:
    """One model's checks on one device. forward: max|y_flax - y_torch| / max(1, max|y_torch|) (gate 1e-5);
    gradient: worst over parameters of max|g_flax - g_torch| / max|g_torch| (gate 1e-4), float32; the
    *_float64_* figures are each side's distance from the float64 referee, the criteria which rule held."""
    model: str
    parameters: int
    device: str
    forward: float
    forward_float64_flax: float
    forward_float64_torch: float
    forward_criterion: str
    gradient: float
    gradient_float64_flax: float
    gradient_float64_torch: float
    gradient_criterion: str
    round_trip_exact: bool
    api: str = "linen"

    @property
    def ok(self) -> bool:
        return referee.FAILED not in (self.forward_criterion, self.gradient_criterion) and self.round_trip_exact


def round_trip_exact(module: torch.nn.Module, model, sample_shape) -> bool:
    """torch -> Flax (linen variables, or an NNX network's own) -> torch returns every tensor bit for bit
    (BatchNorm buffers included)."""
    state = module.state_dict()
    back = convert.flax_to_torch(flax_weights(module, model, sample_shape), model, module, sample_shape)
    return set(back) == set(state) and all(torch.equal(back[k], state[k].cpu()) and back[k].dtype == state[k].dtype
                                           for k in state)


def gradient_case(name: str, seed: int, where: device.Device, original: tuple | None = None,
                  api: str = "linen") -> tuple:
    """The arguments of the gradient check of `name`: (module on where.torch, model, Flax variables (None for
    an NNX network, which holds them), a kink-free NCHW input at gradient_settings' size, targets, loss kind),
    for training.compare_gradients.

    original: random_original(name, seed, api), reused where the settings take no other configuration."""
    kwargs, size = gradient_settings(name)
    module, model = original if original and not kwargs else random_original(name, seed, api, **kwargs)
    module.to(where.torch)
    x = kink_free_input(module, name, input_shape(model, 2 if model.fixed_size else 1, size), seed)
    targets = training.targets_for(name, module, x, seed)
    return module, model, flax_weights(module, model, x), x, targets, training.loss_kind(name)


def check_model(name: str, seed: int = 0, where: device.Device | None = None, api: str = "linen") -> Row:
    """Forward, gradient and round trip of `name` with torch and Flax (its linen module, or with api="nnx" its
    NNX network) on `where` (default: the CPU)."""
    where = where or device.resolve("cpu")
    with device.placed(where):
        module, model = random_original(name, seed, api)
        parameters = sum(p.numel() for p in module.parameters())
        x = check.sample_input(name, input_shape(model, 3), seed)
        exact = round_trip_exact(module, model, x.shape)
        variables = flax_weights(module, model, x)
        forward = check.compare_outputs(module.to(where.torch), model, variables, x).verdict

        gradient = training.compare_gradients(*gradient_case(name, seed, where, (module, model), api)).verdict
    return Row(name, parameters, where.name, forward.flax_torch, forward.flax_float64, forward.torch_float64,
               forward.criterion, gradient.flax_torch, gradient.flax_float64, gradient.torch_float64,
               gradient.criterion, exact, api)
