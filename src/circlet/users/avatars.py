"""Avatars circlet serves itself: every user has an ``avatar_url`` (CircleCI always sends one, and
strict clients require a string), an identicon drawn from the user's id at a stable path, so no
external service is asked and nothing about the user but the id is in it.

The image is made only of numbers derived from a hash: no text of the request or of the user reaches
the SVG, so there is nothing to escape."""

from __future__ import annotations

import hashlib
import re
from typing import Final

AVATAR_PATH: Final = "/avatars/{key}.svg"
AVATAR_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The pipeline actor of what circlet itself starts (no user).
SYSTEM_AVATAR_KEY: Final = "circlet"
# The image of a key never changes: a client may keep it a day and revalidate with its ETag after.
AVATAR_CACHE_CONTROL: Final = "public, max-age=86400"

GRID = 5
CELL = 50
MARGIN = 25


def avatar_url(base_url: str, key: object, stored: str | None = None) -> str:
    """A user's avatar: the one an operator stored, else the identicon circlet serves for ``key``."""
    return stored or base_url + AVATAR_PATH.format(key=key)


def identicon(key: str) -> tuple[bytes, str]:
    """(SVG bytes, strong ETag) of the identicon of ``key``: a 5x5 grid mirrored left to right, its
    cells and colour taken from SHA-256 of the key, so the same key always draws the same image."""
    digest = hashlib.sha256(key.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    colour = f"hsl({hue},55%,50%)"
    half = (GRID + 1) // 2
    cells = []
    for row in range(GRID):
        for column in range(half):
            if digest[2 + row * half + column] % 2 == 0:
                for x in sorted({column, GRID - 1 - column}):
                    cells.append(
                        f'<rect x="{MARGIN + x * CELL}" y="{MARGIN + row * CELL}" width="{CELL}" height="{CELL}"/>'
                    )
    size = 2 * MARGIN + GRID * CELL
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
        f'<rect width="{size}" height="{size}" fill="#f0f0f0"/>'
        f'<g fill="{colour}">{"".join(cells)}</g></svg>'
    ).encode()
    return svg, '"' + hashlib.sha256(svg).hexdigest()[:32] + '"'
