"""Downloads into a cache, verified by sha256 (as torch.hub checks torchvision's files).

The cache is $XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn. A download goes to `<name>.part` beside its place and
is renamed only once its hash is right: the cache never holds a partial or wrong file under a real name.
"""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
TIMEOUT_S = 30


class FetchError(ValueError):
    """A file could not be fetched or is not the published one; the message says which and what to do."""


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxcnn"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(digest: str, published: str) -> bool:
    """True when `digest` is the published sha256, or starts with it (torchvision publishes the first digits)."""
    return len(published) >= 8 and digest.startswith(published.lower())


def verify(path: str | Path, published: str, trust: bool = False) -> str:
    """The sha256 of `path`; a FetchError giving both hashes when it is not the published one (unless trust)."""
    digest = sha256_of(path)
    if not trust and not matches(digest, published):
        raise FetchError(f"{path} is not the published file: its sha256 is {digest}, the published sha256 "
                         f"{'starts with ' if len(published) < 64 else 'is '}{published}. Nothing was written; "
                         "--trust-file converts it anyway")
    return digest


def fetch(url: str, published: str, cache: Path | None = None) -> tuple[Path, str]:
    """The cached copy of `url` (http(s):// or file://), downloaded when absent or not the published file.

    Returns (path, sha256). Raises FetchError when the address cannot be read, the download is incomplete or
    its hash is not the published one (the partial file is removed).
    """
    cache = cache or cache_dir()
    target = cache / url.rsplit("/", 1)[-1]
    if target.is_file():
        digest = sha256_of(target)
        if matches(digest, published):
            return target, digest
        print(f"warning: the cached {target} is not the published file (sha256 {digest}); downloading it again")
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _download(url, partial)
        digest = sha256_of(partial)
        if not matches(digest, published):
            raise FetchError(f"{url} did not give the published file: its sha256 is {digest}, the published "
                             f"sha256 starts with {published}. Nothing was kept or written")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target, digest


def _download(url: str, path: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total else None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name[:-len(".part")], leave=False) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"cannot download {url} ({reason}). Offline: fetch {url.rsplit('/', 1)[-1]} elsewhere "
                         "and give it with --from FILE (its sha256 is checked the same way)") from err
    if total is not None and got != total:
        raise FetchError(f"the download of {url} stopped after {got} of {total} bytes; run the command again")
