"""What a command does before its first compilation: the persistent XLA cache, and the clock since process start."""

import os
import time
from pathlib import Path

import jax

_IMPORTED = time.time()


def default_cache_dir() -> Path:
    """$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxcnn"


def enable_compile_cache(directory: str | os.PathLike) -> Path:
    """Keeps every XLA compilation of this process in `directory`, however short or small, so the next
    identical run loads its programs instead of compiling them. Call it before the first compilation."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size floor, and none imposed
    return directory


def process_start() -> float:
    """The wall-clock time this process started (Linux: from /proc; elsewhere: when this module was imported)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def seconds_since_start() -> float:
    return time.time() - process_start()
