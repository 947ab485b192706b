"""Run an ASGI app under uvicorn and exit 0 after a graceful SIGTERM drain.

uvicorn (>= 0.29) stops gracefully on SIGTERM (stops accepting, finishes in-flight requests, runs
the lifespan shutdown) and then re-raises the signal, so the process dies of it: exit status -15
(143 in a shell). A container stopped by ``docker compose stop`` then looks like a crash
(``Exited (143)``), and restart policies and supervisors treat it so. SIGTERM is the ordinary way
to stop a service: after the drain the process returns normally (exit 0). SIGINT keeps uvicorn's
behaviour (KeyboardInterrupt semantics for a developer's Ctrl-C).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn


def serve(app: Any, **config: Any) -> None:
    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # the drain is over: do not die of the SIGTERM that started it
                captured = getattr(self, "_captured_signals", None)
                if captured is not None:
                    captured[:] = [s for s in captured if s != signal.SIGTERM]

    _Server(uvicorn.Config(app, **config)).run()
