"""Fetch a dataset source from its public origin, or from a mirror of it, when `data_root` lacks it.

Every file is downloaded to a temporary name and checked against the sha256 pinned in `bbqrec.data.sources`;
derived files are rebuilt by the source's recipes and checked the same way. The whole source is assembled in a
hidden folder beside the destination and renamed into place only when every check passed, so a failed download
leaves nothing behind.

A mirror replaces the origins' base URLs and keeps their layout: `<mirror>/<owner>/<repo>/<commit>/<path>` for
GitHub files (origin `https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>`) and
`<mirror>/pypi/<project>/<filename>` for PyPI files.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from bbqrec.data.sources import GITHUB_RAW, PYPI_SIMPLE, SOURCES, Remote
from bbqrec.io import InputError, atomic_path

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds per network operation
DEFAULT_RETRIES = 3  # extra tries after a network failure, with 1 s, 2 s, 4 s ... pauses
PARALLEL_DOWNLOADS = 8  # movielens-100k-mm has 1,621 small posters
_CHUNK = 1 << 20
_T = TypeVar("_T")


class DownloadError(InputError):
    """A source could not be fetched from its origin or mirror."""


class ChecksumError(DownloadError):
    """A downloaded or rebuilt file differs from the pinned sha256."""


class _NotFound(Exception):
    """The origin answered that the file does not exist (HTTP 404, or no such file under a file:// mirror)."""


def resolve_source(name: str, data_root: str | os.PathLike, resources_dir: str | os.PathLike) -> Path:
    """Where the workflow reads source `name`: `data_root/name` if it exists, else `resources_dir/data/name`
    (the folder the `download` rule fills)."""
    local = Path(data_root) / name
    return local if local.exists() else Path(resources_dir) / "data" / name


def fetch_source(
    name: str,
    dest_dir: str | os.PathLike,
    mirror: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Path:
    """Download source `name` into `dest_dir` (replaced if it exists), verified file by file; returns `dest_dir`.

    `mirror` (config key `download.mirror`) replaces the origins' base URLs, e.g. `file:///data/mirror`; a plain
    folder path is accepted too. Raises `ChecksumError` naming the file, expected and actual hash when a file
    differs, and `DownloadError` saying what to do when the origin cannot be reached.
    """
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    dest = Path(dest_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        out, work = staging / "out", staging / "work"
        out.mkdir()
        work.mkdir()
        fetch = Fetcher(name, mirror, timeout, retries)
        fetch(source.files, out)
        for recipe in source.recipes:
            fetch(recipe.inputs, work)
            recipe.build(work, out, fetch)
            for rel, expected in recipe.outputs.items():
                _check(out / rel, expected, f"{name}/{rel} (rebuilt from its origin files)")
        if dest.exists():
            os.replace(dest, staging / "previous")
        os.replace(out, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: %d files in %s", name, sum(1 for p in dest.rglob("*") if p.is_file()), dest)
    return dest


class Fetcher:
    """Downloads origin files (or their mirror copies) into a folder, each checked against its pinned sha256."""

    def __init__(self, source: str, mirror: str | None, timeout: float, retries: int):
        self.source = source
        self.mirror = _mirror_url(mirror) if mirror else None
        self.timeout = timeout
        self.retries = retries

    def __call__(self, remotes: Mapping[str, Remote], folder: Path, missing_ok: bool = False) -> set[str]:
        """Download each remote to `folder/<name>`; return the names the origin lacks (only with `missing_ok`;
        otherwise a missing file is a `DownloadError`)."""
        if not remotes:
            return set()
        with ThreadPoolExecutor(min(PARALLEL_DOWNLOADS, len(remotes))) as pool:
            futures = {
                pool.submit(self._fetch_one, remote, folder / name, missing_ok): name
                for name, remote in remotes.items()
            }
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            failed = [f for f in done if f.exception() is not None]
            if failed:
                raise failed[0].exception()
        return {name for future, name in futures.items() if not future.result()}

    def url(self, remote: Remote) -> str:
        if self.mirror:
            return f"{self.mirror}/{urllib.parse.quote(remote.path)}"
        if remote.pypi_project:
            return self._pypi_url(remote)
        return GITHUB_RAW + urllib.parse.quote(remote.path)

    def _fetch_one(self, remote: Remote, path: Path, missing_ok: bool) -> bool:
        url = self.url(remote)
        label = f"{self.source}/{path.name}"
        try:
            actual = self._retrying(url, lambda: _download(url, path, remote.sha256, label, self.timeout))
        except _NotFound:
            if missing_ok:
                log.debug("%s: not found at %s", label, url)
                return False
            raise DownloadError(f"{label}: not found at {url}. {self.help()}") from None
        log.debug("%s: %s from %s", label, actual, url)
        return True

    def _pypi_url(self, remote: Remote) -> str:
        """The file's URL from PyPI's JSON index page (PEP 691), whose hash must be the pinned one."""
        index = f"{PYPI_SIMPLE}{remote.pypi_project}/"
        request = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})

        def read_index() -> dict:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)

        try:
            files = self._retrying(index, read_index)["files"]
        except _NotFound:
            raise DownloadError(f"{self.source}: project {remote.pypi_project!r} not found at {index}") from None
        for entry in files:
            if entry["filename"] == remote.filename:
                listed = entry.get("hashes", {}).get("sha256")
                if listed != remote.sha256:
                    raise ChecksumError(
                        f"{self.source}/{remote.filename}: PyPI lists sha256 {listed}, expected {remote.sha256}"
                    )
                return entry["url"]
        raise DownloadError(f"{self.source}: {remote.filename} is not listed at {index}. {self.help()}")

    def _retrying(self, url: str, action: Callable[[], _T]) -> _T:
        """Run `action`, trying again after network failures and server errors; a 404 raises `_NotFound`."""
        for attempt in range(self.retries + 1):
            try:
                return action()
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    raise _NotFound(url) from err
                reason = f"HTTP {err.code} {err.reason}"
                if err.code < 500 and err.code != 429:
                    break
            except urllib.error.URLError as err:
                if isinstance(err.reason, FileNotFoundError):
                    raise _NotFound(url) from err
                reason = str(err.reason)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
                reason = f"{type(err).__name__}: {err}"
            if attempt < self.retries:
                log.warning("%s: %s; trying again (%d/%d)", url, reason, attempt + 1, self.retries)
                time.sleep(2**attempt)
        raise DownloadError(f"{self.source}: cannot download {url} ({reason}). {self.help()}")

    def help(self) -> str:
        return (
            f"Without access to the origin, copy the shared data folder to <data_root>/{self.source} "
            "(config key data_root), or set config key download.mirror (script option --mirror) to a copy of the "
            "origins laid out as <mirror>/<owner>/<repo>/<commit>/<path>, e.g. file:///data/mirror"
            + (f" (now {self.mirror})" if self.mirror else "")
            + "."
        )


def _mirror_url(mirror: str) -> str:
    if "://" not in mirror:
        return Path(mirror).resolve().as_uri()
    return mirror.rstrip("/")


def _download(url: str, path: Path, expected: str | None, label: str, timeout: float) -> str:
    """Stream `url` to a temporary file beside `path`, check its sha256, rename it to `path`; return the hash."""
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as fh:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(f"{label}: sha256 mismatch for {url}: expected {expected}, got {actual}")
    return actual


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(folder: Path) -> str:
    """sha256 of the folder's `sha256sum`-style listing (`<sha256>  <relative path>\\n`, sorted by path): the same
    as `(cd folder && find . -type f | sed 's|^./||' | LC_ALL=C sort | xargs sha256sum) | sha256sum`."""
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())
    listing = "".join(f"{file_sha256(p)}  {rel}\n" for rel, p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def _check(path: Path, expected: str, label: str) -> None:
    if not path.exists():
        raise DownloadError(f"{label}: the recipe did not write {path.name}")
    actual = tree_digest(path) if path.is_dir() else file_sha256(path)
    if actual != expected:
        raise ChecksumError(f"{label}: sha256 mismatch: expected {expected}, got {actual}")
