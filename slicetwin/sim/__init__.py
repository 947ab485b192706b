"""Vectorised RAN slicing simulator (the package's ``sim`` extra: numba, gymnasium).

The package's names load on first use (PEP 562 ``__getattr__``), so importing a light submodule
(``slicetwin.cli.sim``, ``slicetwin.sim.config``) never imports numba: the controller image,
installed without the ``sim`` extra, registers the CLI's simulator commands and serves without
it. Importing ``slicetwin.sim.env`` registers the gymnasium env ``slicetwin/RanSlicing-v0``.
"""

from __future__ import annotations

import importlib

ENV_ID = "slicetwin/RanSlicing-v0"

# public name -> submodule that defines it
_EXPORTS = {"SimConfig": "config", "SliceTraffic": "config", "RanSimulator": "simulator",
            "SimState": "simulator", "WindowKPIs": "simulator", "Dist": "traffic"}

__all__ = ["ENV_ID", "Dist", "RanSimulator", "SimConfig", "SimState", "SliceTraffic",
           "WindowKPIs"]


def __getattr__(name: str):
    sub = _EXPORTS.get(name)
    if sub is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{sub}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
