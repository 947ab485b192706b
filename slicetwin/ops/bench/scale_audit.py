"""What ``slicetwin bench scale`` checks after a run, read back from Redis.

- **Transitions**: every answered pair of consecutive windows of a cell must be in the
  transitions stream exactly once. ``lost`` = expected pairs missing, ``duplicates`` = extra
  entries of a pair, ``windows_accepted_twice`` = a pair stored with two different payloads
  (two replicas accepting one window), ``unexpected`` = stored pairs the client was not answered
  for (a report decided by a replica that died before its answer left).
- **Cell memory**: each cell's memory in Redis must hold the last window the client was
  answered for (``memory_mismatches``; a window behind it means an accepted window was lost or
  overwritten by an older one).
- **Redis cost** (:func:`redis_figures`): commands and CPU per decision, bytes per cell memory
  and per stream entry (``MEMORY USAGE``), the inputs of the scaling guide (docs/deployment.md).

Single Redis or Redis Cluster alike: the stream is read shard by shard
(``slicetwin.platform.stream_shards``) and a cluster's counters are summed over its masters.
"""

from __future__ import annotations

from redis.cluster import RedisCluster as ClusterClient

from slicetwin.core.transition_wire import decode
from slicetwin.platform.cell_keys import CellKeys
from slicetwin.platform.redis_client import is_cluster


def expected_transitions(answered: dict[str, set]) -> set:
    """``{prefix: {(cell index, window)}}`` -> ``{(cell_id, window)}`` that must be stored."""
    out = set()
    for prefix, pairs in answered.items():
        out |= {(f"{prefix}-{c}", w) for c, w in pairs if (c, w - 1) in pairs}
    return out


def audit_transitions(r, streams: tuple[str, ...], answered: dict[str, set]) -> dict:
    """Compare the stream (all its shards) with the answered pairs (only cells of the measured
    load)."""
    prefixes = tuple(f"{p}-" for p in answered)
    payloads: dict[tuple, set] = {}
    entries = 0
    for stream in streams:
        last_id = "-"
        while True:  # page through the stream: it may hold 10^5+ entries
            page = r.xrange(stream, min=last_id, count=10_000)
            if last_id != "-":
                page = page[1:]  # min is inclusive
            if not page:
                break
            for _, f in page:
                t = decode(f)
                if t["cell_id"].startswith(prefixes):
                    entries += 1
                    payloads.setdefault((t["cell_id"], t["window"]), set()).add(f[b"t"])
            last_id = page[-1][0]
    expected = expected_transitions(answered)
    stored = set(payloads)
    return {"transitions_expected": len(expected), "transitions_stored": entries,
            "lost_transitions": len(expected - stored),
            "duplicate_transitions": entries - len(stored),
            "windows_accepted_twice": sum(len(v) > 1 for v in payloads.values()),
            "unexpected_transitions": len(stored - expected)}


def audit_memory(r, keys: CellKeys, answered: dict[str, set]) -> int:
    """Cells whose memory in Redis is not at their last answered window."""
    last: dict[str, int] = {}
    for prefix, pairs in answered.items():
        for c, w in pairs:
            cid = f"{prefix}-{c}"
            last[cid] = max(w, last.get(cid, -1))
    cells = sorted(last)
    p = r.pipeline(transaction=False)
    for cid in cells:
        p.hget(keys.of(cid), "window")
    got = p.execute()
    return sum(int(g if g is not None else -1) != last[c] for c, g in zip(cells, got, strict=True))


def redis_sample(r) -> dict:
    """Counters to difference around the measured phase (summed over a cluster's masters)."""
    if is_cluster(r):
        infos = list(r.info(target_nodes=ClusterClient.PRIMARIES).values())
    else:
        infos = [r.info()]
    return {"cmds": sum(i["total_commands_processed"] for i in infos),
            "cpu_s": sum(i["used_cpu_user"] + i["used_cpu_sys"] for i in infos),
            "used_memory": sum(i["used_memory"] for i in infos)}


def redis_figures(r, before: dict, after: dict, decisions: int, keys: CellKeys,
                  cell_ids: list[str]) -> dict:
    """Per-decision Redis cost (a cluster's masters together) and per-cell / per-entry
    memory (``keys``: the controllers' layout, cell keys and stream shards)."""
    streams = keys.streams
    cpu = after["cpu_s"] - before["cpu_s"]
    sample = cell_ids[:200]
    sizes = [r.memory_usage(keys.of(c), samples=0) or 0 for c in sample]
    xlen = sum(r.xlen(s) for s in streams)
    sbytes = sum(r.memory_usage(s, samples=0) or 0 for s in streams)
    return {"redis_cmds_per_decision": round((after["cmds"] - before["cmds"]) / decisions, 2)
            if decisions else None,
            "redis_cpu_s": round(cpu, 3),
            "decisions_per_redis_cpu_s": round(decisions / cpu, 1) if cpu > 0 else None,
            "cell_memory_bytes": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "stream_entries": xlen,
            "stream_bytes_per_transition": round(sbytes / xlen, 1) if xlen else None,
            "redis_used_memory_mb": round(after["used_memory"] / 2**20, 2)}
