"""Opaque, signed keyset page tokens: a page costs the same at row 1,000,000 as at row 1.

A token carries the sort key of the last row served and the listing it belongs to (its scope, e.g.
the owner of the contexts), signed with HMAC. A tampered token, or one from another listing, is a
400, never a 500 and never a page of someone else's rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import orjson

from circlet.http.errors import BadRequest

SIGNATURE_BYTES = 16


class PageTokens:
    def __init__(self, signing_key: bytes):
        self._key = hashlib.sha256(b"circlet-page-token" + signing_key).digest()

    def _sign(self, payload: bytes) -> bytes:
        # hmac.digest: the same HMAC-SHA256 in one call to OpenSSL, without building an HMAC object
        return hmac.digest(self._key, payload, "sha256")[:SIGNATURE_BYTES]

    def encode(self, scope: str, position: Sequence[Any]) -> str:
        payload = orjson.dumps([scope, *position])
        return base64.urlsafe_b64encode(self._sign(payload) + payload).decode().rstrip("=")

    def decode(self, token: str, scope: str) -> list[Any]:
        """The position after which the next page starts; 400 for anything we did not issue here."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest("page-token is invalid.") from None
        signature, payload = raw[:SIGNATURE_BYTES], raw[SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise BadRequest("page-token is invalid.")
        decoded = orjson.loads(payload)
        if not isinstance(decoded, list) or not decoded or decoded[0] != scope:
            raise BadRequest("page-token does not belong to this listing.")
        return decoded[1:]
