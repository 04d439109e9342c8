"""Signing in to the web app: passwords and pasted tokens, sessions, the limit on failed sign-ins, and
the audit of each. Never commits (the endpoint's unit of work does)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import Principal
from circlet.auth.tokens import token_hash
from circlet.db.types import utcnow
from circlet.http.errors import RateLimited
from circlet.users import repository as users
from circlet.users.passwords import password_matches
from circlet.web import repository as web_sessions

SESSION_LIFETIME = timedelta(days=14)
# Failed sign-ins allowed in a window, per login and per client address: enough for a person's typos,
# far too few for guessing. A success does not clear the address's count (one address may try many logins).
FAILURES_PER_LOGIN = 10
FAILURES_PER_ADDRESS = 50
FAILURE_WINDOW_SECONDS = 15 * 60


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's secret (given to the browser once, stored only hashed)."""

    secret: str
    user_id: uuid.UUID


@dataclass(frozen=True)
class BrowserSession:
    """The session behind a request: who, and the CSRF token its forms carry."""

    id: uuid.UUID
    principal: Principal
    csrf_token: str


class FailureWindow:
    """Failed sign-ins per key in the last ``FAILURE_WINDOW_SECONDS`` (in this process's memory)."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - FAILURE_WINDOW_SECONDS:
            times.popleft()
        return times

    def exhausted(self, key: str) -> float | None:
        """Seconds until another try is allowed, or None if one is allowed now."""
        now = time.monotonic()
        times = self._recent(key, now)
        if len(times) < self.allowed:
            return None
        return times[0] + FAILURE_WINDOW_SECONDS - now

    def fail(self, key: str) -> None:
        if len(self._failures) > 100_000:
            self._failures.clear()
        self._recent(key, time.monotonic()).append(time.monotonic())


class WebService:
    def __init__(self, csrf_key: bytes, *, cache_seconds: float = 0.0) -> None:
        self._csrf_key = csrf_key
        # As the API's Authenticator trusts a verified token for ``CIRCLET_AUTH_CACHE_SECONDS``, a
        # resumed session is trusted as long: a revocation elsewhere takes effect within that time
        # (a sign-out here at once). Two queries less per page.
        self.cache_seconds = cache_seconds
        self._resumed: dict[str, tuple[float, BrowserSession]] = {}
        self.by_login = FailureWindow(FAILURES_PER_LOGIN)
        self.by_address = FailureWindow(FAILURES_PER_ADDRESS)

    # CSRF: a form's token is an HMAC of its session's id (or, on the sign-in form, of a random
    # pre-session cookie), so nothing is stored and a token of one session is worthless in another.
    def csrf_token(self, bound_to: str) -> str:
        return hmac.new(self._csrf_key, b"csrf:" + bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, bound_to: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(bound_to), token or "")

    def _check_limits(self, login_key: str | None, address: str) -> None:
        """A pasted token names no account: only its address is counted."""
        by_login = self.by_login.exhausted(login_key) if login_key is not None else None
        waits = [w for w in (by_login, self.by_address.exhausted(address)) if w]
        if waits:
            raise RateLimited(
                "Too many failed sign-ins: try again later.", headers={"Retry-After": str(int(max(waits)) + 1)}
            )

    async def _failed(self, session: AsyncSession, login: str, address: str, method: str) -> None:
        if method == "password":
            self.by_login.fail(login.lower())
        self.by_address.fail(address)
        await audit.record(
            session,
            actor_id=None,
            actor=login[:255] or "(unknown)",
            action="web.sign_in.failed",
            target_type="user",
            target_id=login[:64],
            org_id=None,
            details={"method": method, "address": address},
        )

    async def _open(
        self, session: AsyncSession, user_id: uuid.UUID, login: str, api_token_id: uuid.UUID | None, address: str
    ) -> SignedIn:
        secret = secrets.token_urlsafe(32)
        await web_sessions.delete_expired(session)
        await web_sessions.add_session(session, secret_hash(secret), user_id, api_token_id, utcnow() + SESSION_LIFETIME)
        await audit.record(
            session,
            actor_id=user_id,
            actor=login,
            action="web.sign_in",
            target_type="user",
            target_id=user_id,
            org_id=None,
            details={"method": "token" if api_token_id else "password", "address": address},
        )
        return SignedIn(secret, user_id)

    async def sign_in_with_password(
        self, session: AsyncSession, login: str, password: str, address: str
    ) -> SignedIn | None:
        """A new session, or None (audited and counted) when the login or password is wrong."""
        login = login.strip()
        self._check_limits(login.lower(), address)
        found = await web_sessions.find_password_hash(session, login.lower()) if login else None
        # argon2 takes tens of milliseconds of CPU: off the event loop. An unknown login costs the same.
        matches = await asyncio.to_thread(password_matches, found[1] if found else None, password)
        if found is None or not matches:
            await self._failed(session, login, address, "password")
            return None
        return await self._open(session, found[0], login, None, address)

    async def sign_in_with_token(self, session: AsyncSession, token: str, address: str) -> SignedIn | None:
        """A session bound to the token: revoking the token ends it."""
        token = token.strip()
        self._check_limits(None, address)
        owner = await users.find_token_owner(session, token_hash(token)) if token else None
        if owner is None:
            await self._failed(session, "", address, "token")
            return None
        return await self._open(session, owner.user_id, owner.login, owner.token_id, address)

    async def resume(self, session: AsyncSession, secret: str) -> BrowserSession | None:
        hashed = secret_hash(secret)
        now = time.monotonic()
        cached = self._resumed.get(hashed)
        if cached is not None and cached[0] > now:
            return cached[1]
        browser = await self._load(session, hashed)
        if browser is None:
            self._resumed.pop(hashed, None)
        elif self.cache_seconds > 0:
            if len(self._resumed) > 10_000:
                self._resumed.clear()
            self._resumed[hashed] = (now + self.cache_seconds, browser)
        return browser

    async def _load(self, session: AsyncSession, hashed: str) -> BrowserSession | None:
        owner = await web_sessions.find_session_owner(session, hashed)
        if owner is None:
            return None
        roles = await users.roles_of(session, owner.user_id)
        principal = Principal(
            owner.user_id,
            owner.login,
            owner.name,
            owner.avatar_url,
            owner.api_token_id or owner.session_id,
            roles,
        )
        return BrowserSession(owner.session_id, principal, self.csrf_token(str(owner.session_id)))

    async def sign_out(self, session: AsyncSession, browser: BrowserSession) -> None:
        await web_sessions.delete_session(session, browser.id)
        self._resumed = {key: value for key, value in self._resumed.items() if value[1].id != browser.id}
        await audit.record(
            session,
            actor_id=browser.principal.user_id,
            actor=browser.principal.login,
            action="web.sign_out",
            target_type="user",
            target_id=browser.principal.user_id,
            org_id=None,
            details={},
        )
