"""Judging float32 differences against a float64 referee.

Two float32 implementations of the same network differ by rounding, and by how much depends on the
machine (CPU model, GPU kernel choice). A fixed tolerance on Flax-vs-torch alone then passes on one
machine and fails on the next. The referee is the same computation in float64 (torch, on the CPU): a
check passes when

- agreement: Flax is within `tolerance` of torch, or
- referee:   Flax is no further from float64 than max(tolerance, 2 x torch's distance from float64),
             i.e. Flax is at least as exact as torch on that device, or
- spread:    Flax is no further from float64 than 2 x the float64 quantity's own change when the input and the
             weights move by `SPREAD_STEP` (relative, 8 float32 ulps): the quantity is ill-conditioned here: a
             ReLU-like kink sits within float32 rounding of some activation, so which side float32 lands on
             decides the gradient, and torch's float32 landed on float64's side by chance.

- float64 port: where torch's own float32 misses float64 by more than the gate, float32 cannot judge the port
             (the quantity is chaotic at this size: train-mode BatchNorm over a 2x2 map); the port is then run in
             float64 and must equal the float64 referee within FLOAT64_PORT_STEPS float64 roundings of the
             amplification torch's float32 shows (float64 rounds 2^-29 as coarsely as float32).

A wrong port (a transposed kernel, a biased running variance, a wrong flatten order) is orders of
magnitude further from float64 than either float32 implementation, and fails all three criteria.
"""

import copy
import dataclasses
from typing import Iterable, Mapping

import numpy as np
import torch

AGREEMENT, REFEREE, SPREAD, FAILED = "flax~torch", "float64 referee", "float64 spread", "FAILED"
FLOAT64_PORT = "float64 port"
SPREAD_STEP = 2.0 ** -20
FLOAT64_PORT_FLOOR, FLOAT64_PORT_STEPS = 1e-9, 1024.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One quantity (an output, a gradient, a running statistic), or the worst of several, judged three ways.

    flax_torch: distance Flax vs torch; flax_float64 / torch_float64: each one's distance from the
    float64 referee (relative, in the same measure as flax_torch); float64_spread: the referee's own change
    under an input step of SPREAD_STEP (0 where not measured); criterion: which one held.
    """
    flax_torch: float
    flax_float64: float
    torch_float64: float
    tolerance: float
    criterion: str
    float64_spread: float = 0.0
    float64_port: float = 0.0  # the port run in float64 vs the referee (measured only where float32 cannot judge)

    @property
    def ok(self) -> bool:
        return self.criterion != FAILED

    def __str__(self) -> str:
        spread = f", float64 spread {self.float64_spread:.2g}" if self.float64_spread else ""
        return (f"{self.criterion}: flax-torch {self.flax_torch:.2g}, flax-float64 {self.flax_float64:.2g}, "
                f"torch-float64 {self.torch_float64:.2g}{spread} (tolerance {self.tolerance:g})")


def verdict(flax_torch: float, flax_float64: float, torch_float64: float, tolerance: float,
            float64_spread: float = 0.0) -> Verdict:
    """The verdict on the distances: AGREEMENT, else REFEREE, else SPREAD (where a spread is given), else FAILED."""
    if flax_torch <= tolerance:
        criterion = AGREEMENT
    elif flax_float64 <= max(tolerance, 2.0 * torch_float64):
        criterion = REFEREE
    elif flax_float64 <= 2.0 * float64_spread:
        criterion = SPREAD
    else:
        criterion = FAILED
    return Verdict(flax_torch, flax_float64, torch_float64, tolerance, criterion, float64_spread)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Many tensors judged as one: the worst distances, and a criterion that held for each tensor on its own
    (the weakest one any tensor needed: AGREEMENT, REFEREE, SPREAD, or FAILED if one failed)."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("nothing to judge")
    criteria = {v.criterion for v in verdicts}
    criterion = next(c for c in (FAILED, FLOAT64_PORT, SPREAD, REFEREE, AGREEMENT) if c in criteria or c == AGREEMENT)
    return Verdict(max(v.flax_torch for v in verdicts), max(v.flax_float64 for v in verdicts),
                   max(v.torch_float64 for v in verdicts), max(v.tolerance for v in verdicts), criterion,
                   max(v.float64_spread for v in verdicts), max(v.float64_port for v in verdicts))


def float32_cannot_judge(v: Verdict) -> bool:
    """A failed verdict where torch's own float32 misses float64 by more than the gate."""
    return not v.ok and v.torch_float64 > v.tolerance


def proven_in_float64(v: Verdict, float64_port: float) -> Verdict:
    """`v`, passed as FLOAT64_PORT where float32 cannot judge and the port in float64 is within the float64
    rounding that the quantity's conditioning allows: FLOAT64_PORT_STEPS x 2^-29 x torch's float32 distance."""
    allowed = max(FLOAT64_PORT_FLOOR, FLOAT64_PORT_STEPS * 2.0 ** -29 * v.torch_float64)
    if not float32_cannot_judge(v) or float64_port > allowed:
        return dataclasses.replace(v, float64_port=float64_port) if float32_cannot_judge(v) else v
    return dataclasses.replace(v, criterion=FLOAT64_PORT, float64_port=float64_port)


def relative_difference(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max|a - b| / max(max|b|, floor) (0 when both are all zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, floor)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def judge(flax: np.ndarray, torch_: np.ndarray, float64: np.ndarray, tolerance: float,
          floor: float = 0.0, stepped: Iterable[np.ndarray] = ()) -> Verdict:
    """Verdict for one array: relative differences (max|diff| / max(max|reference|, floor)); `stepped`: the
    float64 array again from the referee moved by SPREAD_STEP (`stepped`), whose distance from `float64` is the
    spread."""
    spread = max((relative_difference(s, float64, floor) for s in stepped), default=0.0)
    return verdict(relative_difference(flax, torch_, floor), relative_difference(flax, float64, floor),
                   relative_difference(torch_, float64, floor), tolerance, spread)


def stepped(float64_module: torch.nn.Module, x: np.ndarray, seed: int = 0
            ) -> list[tuple[torch.nn.Module, np.ndarray]]:
    """The referee moved by SPREAD_STEP of their own size each way along one random sign pattern: the input and
    every parameter (float32 rounding in any layer acts as such a step of its weights). An activation near a
    kink crosses it in one of the two, whichever side float32 rounding would push it to."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    signs = rng.choice([-1.0, 1.0], size=x.shape)
    params = dict(float64_module.named_parameters())
    param_signs = {k: torch.from_numpy(rng.choice([-1.0, 1.0], size=tuple(p.shape))) for k, p in params.items()}
    copies = []
    for direction in (1.0, -1.0):
        module = copy.deepcopy(float64_module)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.add_(direction * SPREAD_STEP * p.abs() * param_signs[name].to(p.dtype))
        copies.append((module, x + direction * SPREAD_STEP * np.abs(x) * signs))
    return copies


def judge_scalar(flax: float, torch_: float, float64: float, tolerance: float) -> Verdict:
    """Verdict for one number (a loss): differences relative to |float64|."""
    scale = abs(float64) or 1.0
    return verdict(abs(flax - torch_) / scale, abs(flax - float64) / scale, abs(torch_ - float64) / scale, tolerance)


def judge_each(flax: Mapping[str, np.ndarray], torch_: Mapping[str, np.ndarray],
               float64: Mapping[str, np.ndarray], tolerance: float, floor: float = 0.0,
               stepped: Iterable[Mapping[str, np.ndarray]] = ()) -> dict[str, Verdict]:
    """`judge` per key of `torch_` (the three mappings, and each of `stepped`, must have its keys)."""
    stepped = list(stepped)
    missing = {k for k in torch_ if k not in flax or k not in float64 or any(k not in s for s in stepped)}
    if missing:
        raise KeyError(f"keys missing from the Flax or float64 side: {sorted(missing)}")
    return {k: judge(flax[k], torch_[k], float64[k], tolerance, floor, [s[k] for s in stepped]) for k in torch_}


def float64_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The referee: a float64 copy of `module` on the CPU (the module itself is untouched)."""
    return copy.deepcopy(module).cpu().double()
