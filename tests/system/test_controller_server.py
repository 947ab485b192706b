"""The controller's uvicorn protocol (controller/server.py) over a real socket: head and body
leave in one write, and the paths where a head is not followed by a body in the same step
(100-continue, errors, keep-alive sequences) still answer completely."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

from tests.support.controller import controller_process, report


def _exchange(port: int, raw: bytes, expect: int = 1, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until ``expect`` complete responses (Content-Length framed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        buf, done = b"", 0
        while done < expect:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {done} responses: {buf[-300:]!r}"
            buf += chunk
            done, rest = 0, buf
            while b"\r\n\r\n" in rest:
                head, rest = rest.split(b"\r\n\r\n", 1)
                if head.startswith(b"HTTP/1.1 100"):
                    continue
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                if len(rest) < n:
                    break
                rest = rest[n:]
                done += 1
        return buf


def _post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (path.encode(), len(body), extra)) + body


def test_responses_complete_on_every_path():
    with controller_process(model_source="init") as url:
        port = urlparse(url).port
        good = [json.dumps(report("srv", w)).encode() for w in range(3)]
        # three keep-alive requests back to back, answered in order
        out = _exchange(port, b"".join(_post("/v1/reports", b) for b in good), expect=3)
        assert out.count(b"HTTP/1.1 200 OK") == 3
        assert out.index(b'"window":0') < out.index(b'"window":1') < out.index(b'"window":2')
        # one response = one segment on loopback: the head arrives with its body
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(_post("/v1/reports", json.dumps(report("srv", 3)).encode()))
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200") and first.rstrip().endswith(b"}")
        # Expect: 100-continue: the interim head goes out alone, then the answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            body = json.dumps(report("srv", 4)).encode()
            s.sendall(_post("/v1/reports", b"", b"Expect: 100-continue\r\n").replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(body)))
            interim = s.recv(65536)
            assert interim.startswith(b"HTTP/1.1 100")
            s.sendall(body)
            buf = b""
            while not buf.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                assert chunk
                buf += chunk
            assert b"HTTP/1.1 200" in buf and b'"window":4' in buf
        # an error answer and a large one
        assert _exchange(port, _post("/v1/reports", b'{"bad":1}')).startswith(b"HTTP/1.1 422")
        metrics = _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        assert metrics.startswith(b"HTTP/1.1 200") and b"slicetwin_requests_total" in metrics
