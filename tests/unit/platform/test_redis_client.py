"""The connection factory and the stream's shard layout, without a server."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from slicetwin.platform.redis_client import cluster_nodes, connect, is_cluster, is_cluster_url
from slicetwin.platform.redis_errors import is_store_failure
from slicetwin.platform.stream_shards import resolve_shards, shard_keys, shard_of


def test_cluster_url_parsing():
    nodes, kw = cluster_nodes("redis+cluster://trainer:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert kw == {"username": "trainer", "password": "p@ss"}
    assert cluster_nodes("rediss+cluster://h:1")[1] == {"ssl": True}
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1/0")
    with pytest.raises(ValueError, match="bad node"):
        cluster_nodes("redis+cluster://h1:7000,h2")
    with pytest.raises(ValueError, match="database 0"):
        cluster_nodes("redis+cluster://h:7000/3")


def test_connect_picks_the_client_by_url():
    r = connect("redis://127.0.0.1:1/0", socket_timeout=0.1)  # lazy: no connection yet
    assert type(r) is redis.Redis
    r.close()
    with pytest.raises(ValueError, match="unsupported Redis URL"):
        connect("http://127.0.0.1:1")
    # a cluster client is built on first use (a service starts while Redis is away), and
    # then fails as any Redis failure does
    c = connect("redis+cluster://127.0.0.1:1", socket_timeout=0.2, socket_connect_timeout=0.2)
    assert is_cluster(c)
    script = c.register_script("return 1")  # no connection needed
    assert len(script.sha) == 40
    with pytest.raises(Exception) as e:
        c.ping()
    assert is_store_failure(e.value)
    c.close()


def test_shards_spread_over_equal_slot_ranges():
    assert shard_keys("s:transitions", 1) == ("s:transitions",)
    for n in (2, 3, 6, 12):
        keys = shard_keys("s:transitions", n)
        assert len(set(keys)) == n
        for i, k in enumerate(keys):
            assert k.startswith("s:transitions:{") and k.endswith("}")
            assert i * 16384 // n <= key_slot(k.encode()) < (i + 1) * 16384 // n
    assert shard_keys("s:transitions", 6) == shard_keys("s:transitions", 6)  # stable


def test_cell_to_shard_is_stable_and_spread():
    counts = [0] * 6
    for c in range(6000):
        counts[shard_of(f"cell-{c}", 6)] += 1
    assert min(counts) > 800  # crc32 spreads cells evenly (1,000 each on average)
    assert shard_of("cell-7", 6) == shard_of("cell-7", 6) and shard_of("x", 1) == 0
    assert resolve_shards(0, cluster=False) == 1 and resolve_shards(0, cluster=True) == 6
    assert resolve_shards(4, cluster=False) == 4
    with pytest.raises(ValueError):
        resolve_shards(-1, cluster=True)


def test_settings_refuse_a_bad_url_and_a_braced_prefix():
    from pydantic import ValidationError

    from slicetwin.platform.security import registry_connection

    cls = registry_connection()
    assert cls(redis_url="redis+cluster://a:1,b:2").redis_url.startswith("redis+cluster")
    with pytest.raises(ValidationError, match="redis\\+cluster"):
        cls(redis_url="http://x")
    with pytest.raises(ValidationError, match="bad node"):
        cls(redis_url="redis+cluster://a")
    with pytest.raises(ValidationError, match="must not contain"):
        cls(registry_prefix="x{y}:")
