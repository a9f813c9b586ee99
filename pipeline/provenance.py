"""What derived data depends on besides its inputs: the code that made it.

A store keeps what a run made (parsed uploads, statements, themes) and reuses it while its inputs are
unchanged. A release that reads, splits or clusters differently must make it again, and a version
number raised by hand is forgotten (the themes' one stayed 1 through 35 changes to how themes are
made); a hash of the source is not.
"""

from __future__ import annotations

import hashlib
import importlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def code_id(*modules: str) -> str:
    """A short hash of the source of ``modules`` (dotted names; a package counts with every module in
    its folder): it changes with any change to their code, and with nothing else."""
    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):  # a package
            sources = sorted(Path(next(iter(module.__path__))).glob("*.py"))
        else:
            sources = [Path(str(module.__file__))]
        for source in sources:
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]
