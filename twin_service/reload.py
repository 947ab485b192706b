"""Reload the served twin when the model registry promotes a new ``twin`` version.

REGISTRY HOOK: ``make_registry_watcher`` is the one place that knows the registry's API.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("slicetwin.twin_service")


def make_registry_watcher(holder, settings, metrics):
    raise RuntimeError("the model registry (slicetwin.registry) is not available yet; "
                       "start the twin service with SLICETWIN_TWIN_MODEL=<file> instead")


__all__ = ["make_registry_watcher", "asyncio", "log"]
