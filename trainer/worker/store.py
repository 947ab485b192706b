"""Append-only on-disk dataset of live transitions (the trainer's copy of the stream).

Layout under ``root``::

    chunk-00000001.npz   one Transitions batch + its stream ids (written to .tmp, fsync'd, renamed)
    index.jsonl          one line per committed chunk: {"chunk", "n", "first_id", "last_id"},
                         appended and fsync'd *after* the chunk file is durable

A chunk counts only once its index line is complete, so a crash between the two writes leaves
an orphan chunk that is deleted on open; its entries were never acknowledged on the stream, so
they are delivered again. ``last_id`` (the newest persisted stream id) lets the consumer skip
entries it re-reads after a crash between "persisted" and "acknowledged": exactly once in the
dataset, at least once on the wire.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from dataclasses import fields
from pathlib import Path

import numpy as np

from slicetwin.core.transitions import Transitions

INDEX = "index.jsonl"


def stream_id_key(sid: str) -> tuple[int, int, int]:
    """'1700000000000-3' -> (1700000000000, 3, 0), the order Redis gives stream ids; a sharded
    stream's '1700000000000-3@2' -> (1700000000000, 3, 2). Ids of different shards come from
    different servers, so their order across shards is only roughly that of time."""
    base, _, shard = sid.partition("@")
    ms, _, seq = base.partition("-")
    return int(ms), int(seq or 0), int(shard or 0)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DatasetStore:
    """Durable, append-only transitions with their stream ids; cheap ``load()`` of everything."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._chunks: list[dict] = []
        self._cache: list[Transitions] = []
        self._cache_ids: list[np.ndarray] = []
        self._ids_cache: dict[str, set[str]] = {}
        self._max: tuple[int, int, int] | None = None  # highest id key persisted
        self._open()

    # ------------------------------------------------------------------ open / recover
    def _open(self) -> None:
        idx = self.root / INDEX
        good: list[dict] = []
        if idx.exists():
            raw = idx.read_bytes()
            lines = raw.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    break  # a torn last line: that chunk was never committed
                if not (self.root / rec["chunk"]).exists():
                    raise RuntimeError(f"dataset index names a missing chunk {rec['chunk']}")
                good.append(rec)
            clean = b"".join(json.dumps(r).encode() + b"\n" for r in good)
            if clean != raw:  # drop the torn tail so later appends start on a fresh line
                tmp = idx.with_suffix(".tmp")
                tmp.write_bytes(clean)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                tmp.replace(idx)
                _fsync_dir(self.root)
        names = {r["chunk"] for r in good}
        for p in self.root.glob("chunk-*.npz*"):
            if p.name not in names:  # orphan of a crash: never acknowledged, will come again
                p.unlink()
        self._chunks = good

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return sum(int(c["n"]) for c in self._chunks)

    @property
    def last_id(self) -> str | None:
        return self._chunks[-1]["last_id"] if self._chunks else None

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def is_persisted(self, sid: str) -> bool:
        """Exact: is stream id ``sid`` in the dataset? Ids after the newest persisted one are
        not (the common case, no I/O); older ones are looked up in the chunks whose id range
        (lowest, highest) covers them, newest first (entries re-read after a crash are recent).
        With a sharded stream the ranges of chunks overlap, so every covering chunk is asked."""
        if not self._chunks:
            return False
        key = stream_id_key(sid)
        if key > self._max_key:
            return False
        for c in reversed(self._chunks):
            if stream_id_key(c["first_id"]) <= key <= stream_id_key(c["last_id"]) \
                    and sid in self._chunk_ids(c["chunk"]):
                return True
        return False

    @property
    def _max_key(self) -> tuple[int, int, int]:
        if self._max is None:
            self._max = max(stream_id_key(c["last_id"]) for c in self._chunks)
        return self._max

    def _chunk_ids(self, name: str) -> set[str]:
        ids = self._ids_cache.get(name)
        if ids is None:
            with np.load(self.root / name) as z:
                ids = set(z["ids"].tolist())
            self._ids_cache[name] = ids
        return ids

    # ------------------------------------------------------------------ write
    def append(self, data: Transitions, ids: list[str]) -> int:
        """Persist one batch durably (fsync) before returning; returns rows written."""
        if len(data) != len(ids):
            raise ValueError(f"{len(data)} transitions but {len(ids)} ids")
        if not len(data):
            return 0
        with self._lock:
            seq = (int(self._chunks[-1]["chunk"][6:14]) + 1) if self._chunks else 1
            name = f"chunk-{seq:08d}.npz"
            path = self.root / name
            tmp = self.root / (name + ".tmp")
            arrays = {f.name: getattr(data, f.name) for f in fields(Transitions)}
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=np.asarray(ids, dtype=np.str_), **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
            _fsync_dir(self.root)
            keys = [stream_id_key(i) for i in ids]  # a chunk's range: its lowest, highest id
            lo = ids[min(range(len(ids)), key=keys.__getitem__)]
            hi = ids[max(range(len(ids)), key=keys.__getitem__)]
            rec = {"chunk": name, "n": len(data), "first_id": lo, "last_id": hi}
            with open(self.root / INDEX, "ab") as fh:
                fh.write(json.dumps(rec).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._chunks.append(rec)
            self._max = None
            self._ids_cache[name] = set(ids)
            if len(self._ids_cache) > 8:  # only recent chunks are ever looked up
                self._ids_cache.pop(next(iter(self._ids_cache)))
            self._cache.append(data)
            self._cache_ids.append(np.asarray(ids, dtype=np.str_))
            return len(data)

    # ------------------------------------------------------------------ read
    def load(self, last: int | None = None) -> tuple[Transitions, np.ndarray]:
        """(all transitions, their stream ids), oldest first; ``last``: only the newest rows."""
        with self._lock:
            if len(self._cache) != len(self._chunks):  # fresh process: read chunks from disk
                self._cache, self._cache_ids = [], []
                for c in self._chunks:
                    with np.load(self.root / c["chunk"]) as z:
                        self._cache.append(Transitions(**{f.name: z[f.name]
                                                          for f in fields(Transitions)}))
                        self._cache_ids.append(z["ids"])
            if len(self._cache) > 1:  # compact in memory (files stay as they are)
                self._cache = [Transitions.concat(self._cache)]
                self._cache_ids = [np.concatenate(self._cache_ids)]
            data = self._cache[0] if self._cache else Transitions.empty()
            ids = self._cache_ids[0] if self._cache_ids else np.zeros(0, np.str_)
        keep = first_of_each_window(data)
        if keep is not None:
            data, ids = data[keep], ids[keep]
        if last is not None and last < len(data):
            data, ids = data[len(data) - last:], ids[len(ids) - last:]
        return data, ids


def first_of_each_window(data: Transitions) -> np.ndarray | None:
    """Rows to keep so each (cell, window) appears once, or None when there is no duplicate.

    A Redis write whose reply was lost is sent again by the controller's sink, so the stream can
    hold the same transition under two stream ids; training must see it once."""
    if len(data) < 2:
        return None
    keys = np.stack([data.cell, data.window], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    if len(first) == len(data):
        return None
    return np.sort(first)


def holdout_mask(ids: np.ndarray, fraction: float) -> np.ndarray:
    """Stable held-out split by a hash of the stream id: a row never moves between train and
    held-out across cycles or restarts, so held-out figures stay comparable."""
    if fraction <= 0:
        return np.zeros(len(ids), bool)
    cut = int(fraction * 1000)
    return np.fromiter((zlib.crc32(str(s).encode()) % 1000 < cut for s in ids), bool, len(ids))
