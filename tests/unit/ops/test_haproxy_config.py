"""The generated HAProxy configuration (``slicetwin.ops.haproxy``) and the scale bench's
argument checks. The configuration is validated by the real ``haproxy -c`` where installed."""

from __future__ import annotations

import subprocess

import pytest

from slicetwin.ops import haproxy
from slicetwin.ops.bench.scale import ScaleConfig


def _cfg(**kw) -> str:
    return haproxy.render_config([("127.0.0.1", 9001), ("127.0.0.1", 9002)], port=9000,
                                 stats_port=9009, stats_socket="/tmp/x.sock", **kw)


def test_round_robin_health_checks_and_safe_retries():
    text = _cfg()
    assert "balance roundrobin" in text and "hdr(X-Cell-Id)" not in text
    assert "option httpchk GET /readyz" in text and "http-check expect status 200" in text
    assert "server ctl0 127.0.0.1:9001 check" in text and "server ctl1 127.0.0.1:9002" in text
    assert "inter 200ms" in text and "fall 2 rise 2" in text
    # a slow replica is not a dead one: its check may take long (a dead port refuses at once)
    assert "timeout check 2000ms" in text and "error-limit 3 on-error mark-down" in text
    assert "option redispatch 1" in text
    retry = next(line.split()[1:] for line in text.splitlines() if "retry-on" in line)
    # only failures where the replica cannot have answered: never a slow answer
    assert set(retry) == {"conn-failure", "empty-response"}
    assert "bind 127.0.0.1:9000" in text and "stats uri /stats" in text


def test_affinity_hashes_the_cell_header():
    text = _cfg(affinity=True)
    assert "balance hdr(X-Cell-Id)" in text and "hash-type consistent" in text


def test_no_backend_is_refused():
    with pytest.raises(ValueError):
        haproxy.render_config([], port=1, stats_port=2, stats_socket="/tmp/x")


@pytest.mark.parametrize("affinity", [False, True])
def test_haproxy_accepts_the_configuration(tmp_path, affinity):
    binary = haproxy.find()
    if binary is None:
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(haproxy.render_config([("127.0.0.1", 9001)], port=9000, stats_port=9009,
                                          stats_socket=str(tmp_path / "s.sock"),
                                          affinity=affinity))
    r = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kw, msg", [
    ({"redis": "sentinel"}, "redis must be"),
    ({"replicas": (1, 2), "kill_replica": True}, "at least 2 replicas"),
    ({"cells": 100}, "multiple of"),
    ({"replicas": ()}, "replicas"),
    ({"rate": 0}, "positive"),
])
def test_scale_config_refuses_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ScaleConfig(**kw).check()
