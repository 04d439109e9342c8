"""The HTTP/1.1 protocol ``circlet serve`` runs: uvicorn's httptools protocol with deliberate limits
on the request head, refused the way every other error is (JSON ``{"message"}``).

Left to itself the parser takes headers of any size (held in memory until the head ends) and fails
a target longer than 64 KiB with a plain-text ``400 Invalid HTTP request received.``. Here the target
is limited to ``CIRCLET_LIMITS__REQUEST_URL_BYTES`` (414) and the headers, together, to
``CIRCLET_LIMITS__REQUEST_HEADER_BYTES`` (431). The cost on every request is one subtraction per
parser callback; the refusal itself goes through uvicorn's one exit for a request it cannot parse
(``send_400_response``), which then answers with the status the limit set."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from circlet.settings import Limits

# Bytes each header line costs on the wire beyond its name and value: ": " and CRLF. Counting them
# bounds the work of a head made of many empty headers too.
HEADER_LINE_OVERHEAD = 4


class HeadTooLarge(Exception):
    """Raised from a parser callback; the parser turns it into its own error, which reaches
    ``send_400_response``."""


@cache
def head_limits() -> tuple[int, int]:
    """(target bytes, header bytes), read once per process from the environment."""
    limits = Limits()
    return limits.request_url_bytes, limits.request_header_bytes


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_bytes_limit, self.header_bytes_limit = head_limits()
        self.url_bytes_left = self.url_bytes_limit
        self.header_bytes_left = self.header_bytes_limit
        self.refusal: tuple[int, str] | None = None

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self.url_bytes_left = self.url_bytes_limit
        self.header_bytes_left = self.header_bytes_limit

    def on_url(self, url: bytes) -> None:
        self.url_bytes_left -= len(url)
        if self.url_bytes_left < 0:
            self.refusal = (414, f"The request URL is longer than {self.url_bytes_limit} bytes, the most allowed.")
            raise HeadTooLarge
        HttpToolsProtocol.on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes_left -= len(name) + len(value) + HEADER_LINE_OVERHEAD
        if self.header_bytes_left < 0:
            self.refusal = (
                431,
                f"The request headers are larger than {self.header_bytes_limit} bytes together, the most allowed.",
            )
            raise HeadTooLarge
        HttpToolsProtocol.on_header(self, name, value)

    def send_400_response(self, msg: str) -> None:
        """Every request the server cannot take before the app sees it: JSON, then the connection
        closes (what follows on it cannot be framed)."""
        status, message = self.refusal or (400, "Invalid HTTP request.")
        body = orjson.dumps({"message": message})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
