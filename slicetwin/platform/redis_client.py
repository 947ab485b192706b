"""The one way every service opens Redis: a single server or a Redis Cluster, chosen by URL.

``redis://``, ``rediss://`` and ``unix://`` URLs give a ``redis.Redis``; ``redis+cluster://``
(or ``rediss+cluster://``) gives a ``redis.cluster.RedisCluster`` whose startup nodes are the
comma-separated ``host:port`` list, e.g. ``redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2:7000``
(one node is enough; several survive a dead first node). The code above this module is the same
on both: every key carries a hash tag (``{...}``), so each script and each multi-key command
touches one slot (docs/deployment.md, "Redis Cluster").

Helpers cover what differs: :func:`node_for_key` gives a plain client on the master that holds a
key's slot (``WAIT`` must run on the connection that wrote), :func:`is_cluster` tells the two
apart.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.retry import Retry

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
PLAIN_SCHEMES = ("redis", "rediss", "unix")

Client = redis.Redis | RedisCluster  # (a cluster client comes wrapped in LazyCluster)


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0] in CLUSTER_SCHEMES


def is_redis_url(url: str | None) -> bool:
    """A URL this module opens (single server or cluster)."""
    return bool(url) and url.split("://", 1)[0] in CLUSTER_SCHEMES + PLAIN_SCHEMES


def is_cluster(client) -> bool:
    return isinstance(client, (RedisCluster, LazyCluster))


def cluster_nodes(url: str) -> tuple[list[ClusterNode], dict]:
    """Startup nodes and connection keywords (credentials, TLS) of a ``redis+cluster://`` URL."""
    parts = urlsplit(url)
    creds, _, hosts = parts.netloc.rpartition("@")
    kw: dict = {}
    if creds:
        user, _, pw = creds.partition(":")
        if user:
            kw["username"] = unquote(user)
        if pw:
            kw["password"] = unquote(pw)
    if parts.scheme == "rediss+cluster":
        kw["ssl"] = True
    nodes = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad node {hp!r} in Redis Cluster URL (want host:port[,host:port])")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0 (drop the /db from the URL)")
    return nodes, kw


def connect(url: str, socket_timeout: float | None = 5.0,
            socket_connect_timeout: float | None = 5.0, **kw) -> Client:
    """A client for ``url``: ``redis.Redis`` or, for ``redis+cluster://``, a ``RedisCluster``
    (built on first use: :class:`LazyCluster`).

    Extra keywords go to the client (``health_check_interval``, ``retry``, ...)."""
    if not is_redis_url(url):
        raise ValueError(f"unsupported Redis URL {url!r} (redis://, rediss://, unix:// or "
                         "redis+cluster://host:port[,host:port])")
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                    socket_connect_timeout=socket_connect_timeout, **kw)
    nodes, creds = cluster_nodes(url)
    # the cluster client retries a failed command after refreshing its slot map (a failover)
    kw.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 3))
    return LazyCluster(dict(startup_nodes=nodes, socket_timeout=socket_timeout,
                            socket_connect_timeout=socket_connect_timeout, **creds, **kw))


class LazyCluster:
    """A ``RedisCluster`` built on first use, and again on the next use while that fails.

    ``RedisCluster(...)`` reads the slot map at once and raises when no node answers; a plain
    ``redis.Redis`` connects on first use. Services are built at start, when Redis may be away
    (decisions never wait on it), so the cluster client is made lazily too: its first call
    raises the usual Redis failure instead of the constructor."""

    def __init__(self, kwargs: dict):
        self._kwargs = kwargs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster_client(self) -> RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = RedisCluster(**self._kwargs)
        return self._client

    def __getattr__(self, name: str):
        return getattr(self.cluster_client(), name)

    def register_script(self, script: str) -> Script:
        return Script(self, script)  # its sha is computed here, without a connection

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)  # redis-py's defaults (bytes replies)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def node_for_key(client: Client, key: str) -> redis.Redis:
    """A plain client on the server that holds ``key``: the client itself for a single Redis,
    the slot's master for a cluster (its topology is refreshed after a failover)."""
    if not is_cluster(client):
        return client
    node = client.get_node_from_key(key)
    conn = client.get_redis_connection(node)
    return conn


def refresh_topology(client: Client) -> None:
    """After a failover or a MOVED reply: re-read the cluster's slot map (no-op on one Redis)."""
    if is_cluster(client):
        client.nodes_manager.initialize()


def write_and_wait(client: Client, key: str, write, replicas: int = 0,
                   timeout_ms: int = 1000) -> tuple[list, int | None]:
    """Queue ``write(pipe)`` on the server holding ``key`` and, with ``replicas`` > 0, ``WAIT``
    for that many replicas on the same connection (WAIT counts what that connection wrote).

    Returns the write's replies and how many replicas confirmed it within ``timeout_ms`` (None
    when none was asked); fewer than asked means a failover now could lose the write (it may
    still reach them: callers re-send, and readers remove duplicates). A stale slot map (``MOVED``, a dead master) is refreshed and the write tried
    once more on the new master."""
    for attempt in (0, 1):
        node = node_for_key(client, key)
        pipe = node.pipeline(transaction=False)
        write(pipe)
        if replicas > 0:
            pipe.execute_command("WAIT", replicas, timeout_ms)
        try:
            out = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as e:
            moved = isinstance(e, redis.ResponseError) and str(e).startswith(("MOVED", "ASK"))
            if is_cluster(client) and (moved or not isinstance(e, redis.ResponseError)):
                refresh_topology_quietly(client)
                if attempt == 0 and moved:
                    continue
            raise
        return out, (int(out.pop()) if replicas > 0 else None)
    raise AssertionError("unreachable")


def refresh_topology_quietly(client: Client) -> None:
    try:
        refresh_topology(client)
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
        pass  # the cluster is still failing over: the next call tries again


def eval_each(client: Client, script, calls: list[tuple[list, list]]) -> list:
    """Run ``script`` once per ``(keys, args)`` in one round trip per node: a cluster pipeline
    on a cluster (each call's keys share a slot), a plain pipeline on one Redis. Returns the
    replies in order; an error reply raises (after loading the script where it was missing)."""
    for attempt in (0, 1):
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        out = pipe.execute(raise_on_error=False)
        missing = any(isinstance(r, redis.exceptions.NoScriptError) for r in out)
        if missing and attempt == 0:
            script.sha = client.script_load(script.script)  # every master on a cluster
            continue
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out
    raise AssertionError("unreachable")
