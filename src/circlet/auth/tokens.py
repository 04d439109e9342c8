"""Personal API tokens: long random strings with a recognisable prefix, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets

# A fixed, documented prefix lets secret scanners recognise a leaked circlet token.
TOKEN_PREFIX = "circlet_pat_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
