"""Who is calling: the spec's three token schemes, a short-lived cache, and per-token rate limits."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass, field

from fastapi import Request

from circlet.auth.tokens import token_hash
from circlet.db.engine import Database
from circlet.http.errors import RateLimited, Unauthorized
from circlet.users import repository as users


@dataclass(frozen=True)
class Principal:
    """The authenticated user, with their role in each organization they belong to."""

    user_id: uuid.UUID
    login: str
    name: str
    avatar_url: str | None
    token_id: uuid.UUID
    roles: dict[uuid.UUID, str] = field(default_factory=dict)

    def role_in(self, org_id: uuid.UUID) -> str | None:
        return self.roles.get(org_id)


def token_from_request(request: Request) -> str | None:
    """``Circle-Token`` header, then HTTP basic (token as user name), then the deprecated query."""
    headers = request.headers
    token = headers.get("circle-token")
    if token:
        return token
    authorization = headers.get("authorization")
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return request.query_params.get("circle-token") or None


class TokenBucket:
    """Allows ``per_minute`` requests a minute with bursts of the same size."""

    __slots__ = ("tokens", "updated")

    def __init__(self, capacity: float):
        self.tokens = capacity
        self.updated = time.monotonic()


class Authenticator:
    def __init__(self, database: Database, *, cache_seconds: float, rate_per_minute: int):
        self.database = database
        self.cache_seconds = cache_seconds
        self.rate_per_minute = rate_per_minute
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def authenticate(self, request: Request) -> Principal:
        token = token_from_request(request)
        if not token:
            raise Unauthorized("You must log in first.")
        hashed = token_hash(token)
        self._charge(hashed)
        now = time.monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self._load(hashed)
        if principal is None:
            self._cache.pop(hashed, None)
            raise Unauthorized("Invalid token provided.")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[hashed] = (now + self.cache_seconds, principal)
        return principal

    def forget(self) -> None:
        """Drop cached principals, after a change to tokens or memberships in this process."""
        self._cache.clear()

    async def _load(self, hashed: str) -> Principal | None:
        async with self.database.reading() as session:
            owner = await users.find_token_owner(session, hashed)
            if owner is None:
                return None
            roles = await users.roles_of(session, owner.user_id)
        return Principal(owner.user_id, owner.login, owner.name, owner.avatar_url, owner.token_id, roles)

    def _charge(self, hashed: str) -> None:
        if self.rate_per_minute <= 0:
            return
        bucket = self._buckets.get(hashed)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[hashed] = TokenBucket(self.rate_per_minute)
        now = time.monotonic()
        rate = self.rate_per_minute / 60.0
        bucket.tokens = min(self.rate_per_minute, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            retry_after = max(1, int((1 - bucket.tokens) / rate + 0.999))
            raise RateLimited("Rate limit exceeded.", headers={"Retry-After": str(retry_after)})
        bucket.tokens -= 1


async def authenticate(request: Request) -> Principal:
    """The FastAPI dependency for every authenticated operation."""
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(request)
