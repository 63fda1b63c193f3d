"""Names a package re-exports from one of its modules, imported on first use (PEP 562).

The workflow imports the torch-free parts of `bbqrec.models` and `bbqrec.training` at every start (each cluster
job parses the Snakefile again); their torch modules load only when one of these names is used.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, module: str, names: tuple[str, ...]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """The package's `__getattr__` and `__dir__` for `names`, taken from `module` when first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
