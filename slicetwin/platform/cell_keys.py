"""Which Redis key holds a cell's memory: the one answer used by the controller, the audits of
``slicetwin bench scale`` / ``bench soak`` and the tests.

- **Single Redis**: ``{prefix}cells:{<cell_id>}`` (the layout since issue 18 part 1; a single
  server has no slots, so keeping it needs no migration).
- **Redis Cluster**: ``{prefix}cells:{<tag>}:<cell_id>``, where ``<tag>`` is what decides the
  slot of the cell's transitions stream shard (``slicetwin.platform.stream_shards``: ``i.j`` for
  shard ``{stream}:{i.j}``, the whole key for an unsharded stream). The cell's memory, its
  ``:explored`` counter and its stream shard then share one slot, so one Lua call can commit the
  memory *and* append the transition it closes (``controller/cells.py``), and a batch's cells of
  one shard commit in one atomic call. Cells still spread evenly over the masters, since the
  shards do; but the key depends on the shard count (``SLICETWIN_TRANSITION_SHARDS``): changing
  it leaves the old keys unread until their TTL (docs/deployment.md, "Redis Cluster").
"""

from __future__ import annotations

from slicetwin.platform.stream_shards import resolve_shards, shard_keys, shard_of


def slot_tag(key: str) -> str:
    """The text that decides ``key``'s cluster slot: its first non-empty ``{...}``, else the
    whole key (Redis Cluster's hash-tag rule)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def cell_key(prefix: str, cell_id: str, shard_key: str | None = None) -> str:
    """A cell's memory key: tagged by the cell id, or (``shard_key``, on a cluster) by the slot
    of the cell's stream shard."""
    if shard_key is None:
        return f"{prefix}cells:{{{cell_id}}}"
    return f"{prefix}cells:{{{slot_tag(shard_key)}}}:{cell_id}"


class CellKeys:
    """The key layout of one deployment: ``of(cell_id)`` is the memory key, ``shard(cell_id)``
    the index of the cell's stream shard (also its commit group on a cluster)."""

    def __init__(self, prefix: str, streams: tuple[str, ...], cluster: bool):
        self.prefix, self.streams, self.cluster = prefix, streams, cluster

    def shard(self, cell_id: str) -> int:
        return shard_of(cell_id, len(self.streams))

    def of(self, cell_id: str) -> str:
        if not self.cluster:
            return cell_key(self.prefix, cell_id)
        return cell_key(self.prefix, cell_id, self.streams[self.shard(cell_id)])


def cell_keys(prefix: str, cluster: bool, shards: int = 0, stream: str | None = None) -> CellKeys:
    """The layout for ``SLICETWIN_REGISTRY_PREFIX`` ``prefix``, ``SLICETWIN_TRANSITION_SHARDS``
    ``shards`` (0: automatic) and the full stream key (default ``{prefix}transitions``)."""
    stream = prefix + "transitions" if stream is None else stream
    return CellKeys(prefix, shard_keys(stream, resolve_shards(shards, cluster)), cluster)
