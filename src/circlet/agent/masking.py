"""Secret masking of step output, applied before any byte leaves the runner.

Every secret of at least ``MIN_SECRET_LENGTH`` characters is replaced by ``MASK``. Matching is
leftmost first and, at one position, longest first, so a secret that contains another is masked
whole. A stream is masked chunk by chunk with the same result as masking the whole text at once: a
position is decided only once every secret that could start there has been seen in full: only the
longest tail of the output that is the beginning of a secret is held back between chunks (at most
``longest secret - 1`` bytes), so output that cannot be part of a secret leaves at once — a live tail
shows ``echo 1; sleep 1; echo 2`` line by line even when the project has secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"********"
MIN_SECRET_LENGTH = 4


class Masker:
    """Masks a fixed set of secrets (compared as UTF-8 bytes)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {secret.encode() for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
        ordered = sorted(values, key=lambda value: (-len(value), value))
        self.longest = len(ordered[0]) if ordered else 0
        self._pattern = re.compile(b"|".join(re.escape(value) for value in ordered)) if ordered else None
        self._by_first_byte: dict[bytes, list[bytes]] = {}
        for value in ordered:
            self._by_first_byte.setdefault(value[:1], []).append(value)

    def mask(self, data: bytes) -> bytes:
        """The whole of ``data`` masked at once."""
        if self._pattern is None:
            return data
        return self._pattern.sub(MASK, data)

    def stream(self) -> MaskingStream:
        return MaskingStream(self)

    def search(self, data: bytes, start: int) -> re.Match[bytes] | None:
        return self._pattern.search(data, start) if self._pattern is not None else None

    def unfinished_tail(self, data: bytes) -> int:
        """The length of the longest tail of ``data`` that a secret starts with but is longer than:
        what may still become a secret when more output comes. Only the positions holding a
        secret's first byte are tried, and nothing of ``data`` is copied: a secret may be 32k
        characters long, and this runs on every chunk of output."""
        earliest = len(data)
        window = max(0, len(data) - self.longest + 1)
        for first, values in self._by_first_byte.items():
            position = data.find(first, window, earliest)
            while position != -1:
                size = len(data) - position
                if any(len(value) > size and data.endswith(value[:size]) for value in values):
                    earliest = position
                    break
                position = data.find(first, position + 1, earliest)
        return len(data) - earliest


class MaskingStream:
    """Masks one output stream chunk by chunk; call ``finish`` at its end for the held-back tail."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._masker.longest == 0:
            return chunk
        data = self._pending + chunk
        # Every secret that starts before ``decided`` is complete in ``data``: had one not been, the
        # tail from its start would be a longer unfinished tail.
        decided = len(data) - self._masker.unfinished_tail(data)
        out = bytearray()
        position = 0
        while position < decided:
            match = self._masker.search(data, position)
            if match is None or match.start() >= decided:
                out += data[position:decided]
                position = decided
                break
            out += data[position : match.start()]
            out += MASK
            position = match.end()
        self._pending = data[position:]
        return bytes(out)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._masker.mask(rest)
