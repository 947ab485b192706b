"""The transitions stream split into shards by cell: key names and the cell -> shard map.

Writer (the controller's sink) and reader (the trainer's source) agree through this module
only: shard ``i`` of ``n`` is ``{stream}:{<tag>}``, where the tag is chosen so that the n tags'
slots fall in n equal ranges of the 16384 cluster slots (``redis-cli --cluster create`` gives
each master an equal contiguous range, so shards spread evenly over the masters). One shard is
the bare ``{stream}`` key, as before shards existed. A cell always goes to the same shard:
``crc32(cell_id) % n`` (the cell number of ``slicetwin.core.transition_wire``).
"""

from __future__ import annotations

from functools import lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from slicetwin.core.transition_wire import cell_number

CLUSTER_DEFAULT_SHARDS = 6  # two per master of a 3-master cluster, one per master of 6


def resolve_shards(setting: int, cluster: bool) -> int:
    """``setting`` 0 means automatic: one shard on a single Redis, six on a cluster."""
    if setting < 0:
        raise ValueError(f"transition shards must be >= 0 (0: automatic), got {setting}")
    if setting:
        return setting
    return CLUSTER_DEFAULT_SHARDS if cluster else 1


@lru_cache(maxsize=64)
def shard_keys(stream: str, n: int) -> tuple[str, ...]:
    """The ``n`` shard keys of ``stream`` (``(stream,)`` for one shard)."""
    if n < 1:
        raise ValueError(f"a stream has at least one shard, got {n}")
    if n == 1:
        return (stream,)
    keys = []
    for i in range(n):
        lo = i * REDIS_CLUSTER_HASH_SLOTS // n
        hi = (i + 1) * REDIS_CLUSTER_HASH_SLOTS // n
        j = 0
        while not lo <= key_slot(f"{i}.{j}".encode()) < hi:
            j += 1
        keys.append(f"{stream}:{{{i}.{j}}}")
    return tuple(keys)


def shard_of(cell_id: str, n: int) -> int:
    return 0 if n == 1 else cell_number(cell_id) % n
