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
_SHA256_BLOCK = 64
# what base64.urlsafe_b64decode translates before decoding
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class PageTokens:
    def __init__(self, signing_key: bytes):
        self._key = hashlib.sha256(b"circlet-page-token" + signing_key).digest()
        # HMAC-SHA256 (RFC 2104) with its two keyed states computed once: signing a payload is then
        # copying them and hashing the payload and the inner digest. ``hmac.digest`` looks the
        # algorithm up in OpenSSL's provider tables on every call, which cost three times the hashing,
        # and a page of the list signs once, twice with a token. Same bytes (tests/http/test_pagination.py).
        key = self._key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _sign(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:SIGNATURE_BYTES]

    def encode(self, scope: str, position: Sequence[Any]) -> str:
        payload = orjson.dumps([scope, *position])
        return base64.urlsafe_b64encode(self._sign(payload) + payload).decode().rstrip("=")

    def decode(self, token: str, scope: str) -> list[Any]:
        """The position after which the next page starts; 400 for anything we did not issue here."""
        try:
            # what base64.urlsafe_b64decode does (non-ASCII: ValueError; other characters dropped),
            # without its three layers of Python around binascii
            raw = binascii.a2b_base64((token + "=" * (-len(token) % 4)).encode("ascii").translate(_FROM_URLSAFE))
        except (binascii.Error, ValueError):
            raise BadRequest("page-token is invalid.") from None
        signature, payload = raw[:SIGNATURE_BYTES], raw[SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise BadRequest("page-token is invalid.")
        decoded = orjson.loads(payload)
        if not isinstance(decoded, list) or not decoded or decoded[0] != scope:
            raise BadRequest("page-token does not belong to this listing.")
        return decoded[1:]
