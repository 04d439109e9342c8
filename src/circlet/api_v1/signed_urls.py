"""Pre-signed step output URLs. On CircleCI a v1.1 action's ``output_url`` is a storage URL that needs
no token, and clients fetch it as it is; circlet's is its own route, so it carries a signature
instead: the URL acts for the user it was made for (their current memberships decide, as with a
token), for an hour, for that one path."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

from circlet.http.errors import Unauthorized

SIGNED_URL_SECONDS = 3600
INVALID = "This output URL's signature is invalid or has expired; get a new one from the job's details."


class OutputUrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _signature(self, path: str, expires: int, user_id: str) -> str:
        return hmac.new(self._key, f"{path}\n{expires}\n{user_id}".encode(), hashlib.sha256).hexdigest()

    def query(self, path: str, user_id: uuid.UUID) -> str:
        """The query string that signs ``path`` (the route's own path, from ``/api``) for ``user_id``."""
        expires = int(time.time()) + SIGNED_URL_SECONDS
        return f"expires={expires}&signer={user_id}&signature={self._signature(path, expires, str(user_id))}"

    def signer(self, path: str, expires: str | None, signer: str | None, signature: str | None) -> uuid.UUID:
        """The user a signed URL acts for; 401 when it is not one we made for ``path``, or has expired."""
        if not (expires and signer and signature and expires.isascii() and expires.isdigit() and len(expires) < 12):
            raise Unauthorized(INVALID)
        # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError)
        expected = self._signature(path, int(expires), signer).encode()
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape")):
            raise Unauthorized(INVALID)
        if int(expires) < time.time():
            raise Unauthorized(INVALID)
        return uuid.UUID(signer)  # signed by us, so a UUID we wrote
