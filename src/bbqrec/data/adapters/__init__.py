"""Source adapters: each reads one kind of raw source into a `RawDataset` (see bbqrec.data.raw).

An adapter is a module with `load(sources: list[Path], options: dict) -> RawDataset`, where `sources` are the
dataset's source folders under data_root and `options` its validated `options` block.
"""

from __future__ import annotations

from types import ModuleType

from bbqrec.data.adapters import amazon_raw, generic, movielens, recbole_benchmark, s3rec

ADAPTERS: dict[str, ModuleType] = {
    "recbole_benchmark": recbole_benchmark,
    "s3rec": s3rec,
    "movielens": movielens,
    "amazon_raw": amazon_raw,
    "generic": generic,
}
