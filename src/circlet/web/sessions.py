"""The browser's session: the cookie, ``require_session`` (the same ``Principal`` the API's
``authenticate`` gives), and the CSRF check of state-changing forms."""

from __future__ import annotations

from fastapi import Request

from circlet.auth import Principal
from circlet.db.engine import Database
from circlet.http.errors import Forbidden
from circlet.web.rendering import SignInRequired
from circlet.web.service import BrowserSession, WebService

SESSION_COOKIE = "circlet_session"
# Before signing in: the random value the sign-in form's CSRF token is bound to (double submit).
SIGN_IN_COOKIE = "circlet_signin"


def cookie_is_secure(request: Request) -> bool:
    """``Secure`` when people reach the server over https (``CIRCLET_PUBLIC_URL``)."""
    public_url: str = request.app.state.settings.public_url
    return public_url.startswith("https://")


async def current_session(request: Request) -> BrowserSession | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > 128:
        return None
    database: Database = request.app.state.database
    service: WebService = request.app.state.web_service
    async with database.reading() as session:
        browser = await service.resume(session, secret)
    request.state.browser_session = browser
    return browser


async def require_browser(request: Request) -> BrowserSession:
    browser = await current_session(request)
    if browser is None:
        raise SignInRequired()
    return browser


async def require_session(request: Request) -> Principal:
    """The FastAPI dependency of every page: the signed-in user, or a redirect to the sign-in page."""
    return (await require_browser(request)).principal


async def require_form_session(request: Request) -> BrowserSession:
    """A state-changing form's session: its CSRF token must be this session's (403 otherwise)."""
    browser = await require_browser(request)
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not request.app.state.web_service.csrf_matches(str(browser.id), token):
        raise Forbidden("The form has expired or did not come from this site: reload the page and try again.")
    return browser
