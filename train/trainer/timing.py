"""Wall-clock timing of JAX work: the device waited for, so the seconds are the work's, not its dispatch's."""

import statistics
import time
from typing import Any, Callable

import jax


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds it took, its outputs waited for)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The median over `repeats` runs of timed(fn)'s seconds."""
    return statistics.median(timed(fn)[1] for _ in range(repeats))
