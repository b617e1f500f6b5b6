"""torch.optim's optimizers as optax transformations, update for update.

torch's `Adam(weight_decay=wd)` adds wd * param to the gradient before the Adam
moments (L2 regularisation); it is not AdamW, which decays the weights apart
from the moments. Pick by the torch name and get torch's arithmetic.
"""

from typing import Union

import optax

LearningRate = Union[float, optax.Schedule]
SCHEDULES = ("constant", "onecycle")


def torch_sgd(lr: LearningRate = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
              nesterov: bool = False) -> optax.GradientTransformation:
    """torch.optim.SGD(lr, momentum, weight_decay, nesterov): g += wd*p; buf = momentum*buf + g; p -= lr*buf."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if momentum:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    return optax.chain(*parts, optax.scale_by_learning_rate(lr))


def torch_adam(lr: LearningRate = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.0) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, betas, eps, weight_decay), weight_decay as L2 added to the gradient."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.scale_by_adam(b1=betas[0], b2=betas[1], eps=eps),
                       optax.scale_by_learning_rate(lr))


def torch_adamw(lr: LearningRate = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 1e-2) -> optax.GradientTransformation:
    """torch.optim.AdamW: decoupled decay p -= lr * wd * p beside the Adam step."""
    return optax.adamw(lr, b1=betas[0], b2=betas[1], eps=eps, weight_decay=weight_decay)


OPTIMIZERS = {
    "sgd": torch_sgd,             # notebook 004: SGD(lr=0.01)
    "adam": torch_adam,           # notebook 002/004: Adam(lr=1e-3)
    "adam_l2": torch_adam,        # notebook 003: Adam(lr=1e-3, weight_decay=1e-3) -- torch's L2 weight decay
    "adamw": torch_adamw,
}


def learning_rate(lr: float, schedule: str = "constant", total_steps: int | None = None,
                  warmup_fraction: float = 0.25) -> LearningRate:
    """lr, or optax's one-cycle schedule peaking at lr after warmup_fraction of total_steps (see train.trainer.recipes)."""
    if schedule == "constant":
        return lr
    if schedule != "onecycle":
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if not total_steps or total_steps < 1:
        raise ValueError("the one-cycle schedule needs the total number of steps")
    return optax.cosine_onecycle_schedule(total_steps, lr, pct_start=warmup_fraction)


def create_optimizer(name: str, lr: LearningRate, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """The optax twin of the torch optimizer `name` ('sgd', 'adam', 'adam_l2', 'adamw'); lr may be a schedule."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    if name == "adam_l2" and not weight_decay:
        raise ValueError("adam_l2 is torch's Adam with weight_decay: give weight_decay > 0")
    return OPTIMIZERS[name](lr=lr, weight_decay=weight_decay)
