"""Blob bodies (caches, workspace layers, artifacts, test results) between the agent and the
server: a file sent as a request body in chunks (httpx), or, where the server is plain ``http://``
with no proxy in the way, one HTTP/1.1 exchange on a plain socket (docs/performance.md, issue 6)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from circlet.agent.protocol.wire import USER_AGENT, ProtocolError

FILE_CHUNK = 1024 * 1024


class FileBody:
    """A request body read from a file in chunks; iterable again, so a retried call resends it whole.

    Its length is taken when it is made and sent as ``Content-Length``: a chunked body costs a copy of
    every chunk on the way out (h11 joins each with its framing). A file that shrinks meanwhile fails
    the call rather than sending less than announced; one that grows is sent up to that length."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self.size
        with open(self.path, "rb") as handle:
            while left > 0:
                chunk = handle.read(min(FILE_CHUNK, left))
                if not chunk:
                    raise ProtocolError(f"{self.path.name} shrank while it was being sent")
                left -= len(chunk)
                yield chunk


DIRECT_READ = 1024 * 1024
DIRECT_TIMEOUT = 30.0
PROXY_VARIABLES = ("http_proxy", "all_proxy")


def direct_endpoint(url: str) -> tuple[str, int, str] | None:
    """Where downloads may go over a plain socket: an ``http://`` server that no proxy setting of the
    environment could apply to (httpx honours them; this path does not, so it steps aside)."""
    parsed = urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        return None
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES):
        return None
    return parsed.hostname, parsed.port or 80, parsed.path.rstrip("/")


async def exchange_directly(
    endpoint: tuple[str, int, str],
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    source: Path | None = None,
    target: Path | None = None,
) -> httpx.Response:
    """One HTTP/1.1 exchange for the body of a blob, with the standard library's ``http.client`` on a
    thread: ``source`` is sent 1 MiB at a time, a 200's body is written to ``target`` as it comes,
    1 MiB at a time.

    httpx reads a body 64 KiB at a time through three layers (httpcore, h11, anyio, which pauses and
    resumes the socket for every read), and sends one through two copies: a 200 MB cache cost the
    runner ~1.1 s of CPU to download and ~0.7 s to upload that way (docs/performance.md, issue 6).
    The answer comes back as an ``httpx.Response`` (a 200's body in ``target``, if given; any other's
    in the response), so callers check it as they check httpx's. Cancelled, the exchange's socket is
    shut down, which ends the thread's blocking call at once."""
    exchange = _BlobExchange(endpoint, method, path, headers, source, target)
    try:
        return await asyncio.shield(asyncio.to_thread(exchange.run))
    except asyncio.CancelledError:
        exchange.abort()
        raise


class _BlobExchange:
    def __init__(
        self,
        endpoint: tuple[str, int, str],
        method: str,
        path: str,
        headers: dict[str, str],
        source: Path | None,
        target: Path | None,
    ) -> None:
        host, port, prefix = endpoint
        self._connection = http.client.HTTPConnection(host, port, timeout=DIRECT_TIMEOUT, blocksize=DIRECT_READ)
        self._request = (method, prefix + path)
        self._headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        self._source, self._target = source, target

    def abort(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> httpx.Response:
        method, url = self._request
        try:
            if self._source is None:
                self._connection.request(method, url, headers=self._headers)
            else:
                with open(self._source, "rb") as body:
                    size = os.fstat(body.fileno()).st_size
                    try:
                        self._connection.request(method, url, body, {**self._headers, "Content-Length": str(size)})
                    except ConnectionError:
                        pass  # a server refusing the body may answer and close first: read its answer
                    else:
                        if body.tell() < size:  # else the server would wait for the rest
                            raise ProtocolError(f"{self._source.name} shrank while it was being sent")
            response = self._connection.getresponse()
            fields = {name.lower(): value for name, value in response.getheaders()}
            if response.status != 200 or self._target is None:
                return httpx.Response(response.status, headers=fields, content=response.read())
            with open(self._target, "wb") as handle:
                while chunk := response.read(DIRECT_READ):
                    handle.write(chunk)
            if response.length:  # read(amt) ends quietly when the connection ends early
                raise http.client.IncompleteRead(b"", response.length)
            return httpx.Response(response.status, headers=fields)
        finally:
            self._connection.close()
