"""Judging float32 differences against a float64 referee.

Two float32 implementations of the same network differ by rounding, and by how much depends on the
machine (CPU model, GPU kernel choice). A fixed tolerance on Flax-vs-torch alone then passes on one
machine and fails on the next. The referee is the same computation in float64 (torch, on the CPU): a
check passes when

- agreement: Flax is within `tolerance` of torch, or
- referee:   Flax is no further from float64 than max(tolerance, 2 x torch's distance from float64),
             i.e. Flax is at least as exact as torch on that device.

A wrong port (a transposed kernel, a biased running variance, a wrong flatten order) is orders of
magnitude further from float64 than either float32 implementation, and fails both criteria.
"""

import copy
import dataclasses
from typing import Iterable, Mapping

import numpy as np
import torch

AGREEMENT, REFEREE, FAILED = "flax~torch", "float64 referee", "FAILED"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One quantity (an output, a gradient, a running statistic), or the worst of several, judged three ways.

    flax_torch: distance Flax vs torch; flax_float64 / torch_float64: each one's distance from the
    float64 referee (relative, in the same measure as flax_torch); criterion: which one held.
    """
    flax_torch: float
    flax_float64: float
    torch_float64: float
    tolerance: float
    criterion: str

    @property
    def ok(self) -> bool:
        return self.criterion != FAILED

    def __str__(self) -> str:
        return (f"{self.criterion}: flax-torch {self.flax_torch:.2g}, flax-float64 {self.flax_float64:.2g}, "
                f"torch-float64 {self.torch_float64:.2g} (tolerance {self.tolerance:g})")


def verdict(flax_torch: float, flax_float64: float, torch_float64: float, tolerance: float) -> Verdict:
    """The verdict on three distances: AGREEMENT, else REFEREE, else FAILED."""
    if flax_torch <= tolerance:
        criterion = AGREEMENT
    elif flax_float64 <= max(tolerance, 2.0 * torch_float64):
        criterion = REFEREE
    else:
        criterion = FAILED
    return Verdict(flax_torch, flax_float64, torch_float64, tolerance, criterion)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Many tensors judged as one: the worst distances, and a criterion that held for each tensor on its own
    (AGREEMENT when every tensor agrees, REFEREE when every one passes but some only through the referee)."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("nothing to judge")
    criteria = {v.criterion for v in verdicts}
    criterion = FAILED if FAILED in criteria else REFEREE if REFEREE in criteria else AGREEMENT
    return Verdict(max(v.flax_torch for v in verdicts), max(v.flax_float64 for v in verdicts),
                   max(v.torch_float64 for v in verdicts), max(v.tolerance for v in verdicts), criterion)


def relative_difference(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max|a - b| / max(max|b|, floor) (0 when both are all zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, floor)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def judge(flax: np.ndarray, torch_: np.ndarray, float64: np.ndarray, tolerance: float,
          floor: float = 0.0) -> Verdict:
    """Verdict for one array: relative differences (max|diff| / max(max|reference|, floor))."""
    return verdict(relative_difference(flax, torch_, floor), relative_difference(flax, float64, floor),
                   relative_difference(torch_, float64, floor), tolerance)


def judge_scalar(flax: float, torch_: float, float64: float, tolerance: float) -> Verdict:
    """Verdict for one number (a loss): differences relative to |float64|."""
    scale = abs(float64) or 1.0
    return verdict(abs(flax - torch_) / scale, abs(flax - float64) / scale, abs(torch_ - float64) / scale, tolerance)


def judge_each(flax: Mapping[str, np.ndarray], torch_: Mapping[str, np.ndarray],
               float64: Mapping[str, np.ndarray], tolerance: float, floor: float = 0.0) -> dict[str, Verdict]:
    """`judge` per key of `torch_` (the three mappings must have its keys)."""
    missing = {k for k in torch_ if k not in flax or k not in float64}
    if missing:
        raise KeyError(f"keys missing from the Flax or float64 side: {sorted(missing)}")
    return {k: judge(flax[k], torch_[k], float64[k], tolerance, floor) for k in torch_}


def float64_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The referee: a float64 copy of `module` on the CPU (the module itself is untouched)."""
    return copy.deepcopy(module).cpu().double()
