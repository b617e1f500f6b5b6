"""Files that are either complete or absent: every write goes to a temporary name beside the target, then renames."""

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same folder, same suffix, so writers that go by the suffix still
    work) to write to; renames it onto `path` when the block ends without an error, removes it otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # a new file's usual mode (safetensors writes its files 0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """This process's umask, from /proc where Linux gives it (os.umask can only read it by setting it, which
    would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """`path.write_text(text)`, atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)


def error_line(err: BaseException) -> str:
    """An expected failure in one line: an OSError as 'No space left on device: PATH', anything else as its text."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return str(err)
