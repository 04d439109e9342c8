"""Users' web sign-in passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommended parameters), verified in constant time; a user without one signs in with a token."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher()  # argon2id
SHORTEST_PASSWORD = 8
LONGEST_PASSWORD = 1024
# Verified when the login is unknown, so that a wrong login costs as long as a wrong password.
_UNUSED_HASH = HASHER.hash("circlet: no such user")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    if len(password) > LONGEST_PASSWORD:
        return False
    try:
        return HASHER.verify(stored_hash or _UNUSED_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
