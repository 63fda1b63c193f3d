"""Artifact I/O shared by every stage: atomic writes, Parquet metadata, run provenance.

Every artifact is written to a temporary name in the destination folder and renamed into place, so a
crashed or interrupted stage never leaves a half-written file that Snakemake would take as complete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """Bad input from the user: a file, line, column or config key that is not what was expected.

    The message always names the place (file and line, or config key) and what was expected.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(
    frame: pl.DataFrame | pa.Table, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> None:
    """Write a frame atomically; `metadata` values are stored JSON-encoded in the Parquet schema metadata."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON-decoded key/value metadata written by `write_parquet` (Arrow's own keys skipped)."""
    raw = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in raw.items():
        key = k.decode()
        if key.startswith("ARROW:") or key == "pandas":
            continue
        try:
            out[key] = json.loads(v)
        except json.JSONDecodeError:
            out[key] = v.decode()
    return out


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically, keys sorted so that equal content gives equal bytes."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """What produced a result: seed, package versions, the code's commit, platform, CPU and the config used.

    The CPU and torch's thread count are recorded because the same seed gives different floats on another
    instruction set (AVX2 against AVX-512) or thread count, and so different metrics.
    """
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for pkg in ("bbqrec", "torch", "polars", "pyarrow", "numpy", "faiss-cpu", "sentence-transformers", "timm"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return {
        "seed": seed,
        "versions": versions,
        "code": code_commit(),
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "config": config or {},
    }


@functools.cache  # one lookup per process: a stage writes several artifacts, and git takes about 10 ms
def code_commit() -> dict[str, Any] | None:
    """The git commit of the checkout this package runs from and whether its tracked files differ from it
    (config, stage scripts and package alike); None outside git (an installed wheel) or without git."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "uncommitted_changes": bool(changed)}


@functools.cache
def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what the platform reports, if anything)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def cpu_description() -> dict[str, Any]:
    """The CPU model, the vector instruction set torch runs on (when torch is loaded) and torch's thread count
    (read at each call: a stage sets its threads after it starts)."""
    description: dict[str, Any] = {"model": cpu_model(), "logical_cores": os.cpu_count()}
    torch = sys.modules.get("torch")  # never import torch here: the torch-free stages record provenance too
    if torch is not None:
        description["torch_capability"] = torch.backends.cpu.get_cpu_capability()
        description["torch_threads"] = torch.get_num_threads()
    return description
