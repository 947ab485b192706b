"""Redis at the edge: adapters turn redis-py's errors into one domain error.

Callers above an adapter (the controller's decision path, the trainer's cycle) catch
:class:`StoreUnavailable` and never need to know which client library failed, nor classify
exceptions by module name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis


class StoreUnavailable(ConnectionError):
    """Redis could not be reached, or failed the operation (it did not complete)."""


# what a Redis call can raise when the server is down, slow, restarting or refusing
# (a cluster client's "no node reachable" is a RedisClusterException, not a RedisError)
REDIS_FAILURES = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException,
                  ConnectionError, TimeoutError, OSError)


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Re-raise any Redis failure inside the block as :class:`StoreUnavailable`."""
    try:
        yield
    except StoreUnavailable:
        raise
    except REDIS_FAILURES as e:
        raise StoreUnavailable(f"{what}: {type(e).__name__}: {e}") from e


def is_store_failure(e: BaseException) -> bool:
    """True for :class:`StoreUnavailable` and for a raw Redis failure from outside an adapter."""
    return isinstance(e, REDIS_FAILURES)
