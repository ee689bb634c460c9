"""Package attributes imported on first use (PEP 562), so that importing one part of the
package does not import what only other parts need (FiftyOne, above all)."""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Iterable, Tuple


def lazy_exports(package: str, exports: Dict[str, str], public: Iterable[str],
                 submodules: Iterable[str] = ()) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``exports`` comes from its
    (relative) module, each of ``submodules`` is the subpackage itself; a name resolves
    once and then lives in the package's namespace like an eagerly imported one."""
    submodules = set(submodules)
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        elif name in submodules:
            value = importlib.import_module("." + name, package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(public) | submodules)

    return __getattr__, __dir__
