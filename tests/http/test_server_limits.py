"""The request head limits of `circlet serve`, over a socket to the real server: a target or headers
larger than the server reads are 414 / 431 with a JSON message, and a request the parser cannot read
is a JSON 400, never uvicorn's plain text."""

from __future__ import annotations

import contextlib
import json
import socket
from urllib.parse import urlsplit

from tests.conftest import LiveServer

URL_LIMIT = 16 * 1024
HEADER_LIMIT = 64 * 1024


def exchange(server: LiveServer, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes or a whole response is in: (status, headers, body)."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        # The server may answer and close before it has read everything: its answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < _expected_length(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.decode().partition(":") for line in header_block.split(b"\r\n"))
    )
    return int(status_line.split()[1]), headers, body


def _expected_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 0


def get(target: str, extra_headers: bytes = b"") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: circlet\r\n".encode() + extra_headers + b"\r\n"


def test_head_limits_answer_json_with_their_status(live_server: LiveServer) -> None:
    status, headers, body = exchange(live_server, get("/api/v2/pipeline?page-token=" + "a" * 100_000))
    assert status == 414 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": f"The request URL is longer than {URL_LIMIT} bytes, the most allowed."}

    status, headers, body = exchange(live_server, get("/api/v2/me", b"X-Big: " + b"b" * 100_000 + b"\r\n"))
    assert status == 431 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"].startswith(f"The request headers are larger than {HEADER_LIMIT} bytes")

    many = b"".join(b"X-%d: v\r\n" % n for n in range(HEADER_LIMIT // 8))
    assert exchange(live_server, get("/api/v2/me", many))[0] == 431

    status, headers, body = exchange(live_server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and json.loads(body) == {"message": "Invalid HTTP request."}


def test_requests_within_the_limits_reach_the_app(live_server: LiveServer) -> None:
    target = "/api/v2/pipeline?page-token=" + "a" * (URL_LIMIT - 100)
    status, _, body = exchange(live_server, get(target, b"X-Big: " + b"b" * (HEADER_LIMIT - 1000) + b"\r\n"))
    assert status == 401 and set(json.loads(body)) == {"message"}
    # The server still serves on after refusing heads.
    assert exchange(live_server, get("/healthz"))[0] == 200
