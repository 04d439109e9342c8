"""The web app's routes: sign-in and sign-out here, the pages in ``pages.py``. Each page opens one
unit of work and calls the services the API calls, with the session's ``Principal``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from circlet.db.engine import Database
from circlet.http.errors import Forbidden
from circlet.web.rendering import SECURITY_HEADERS, Crumb, PageRoute, local_path, page
from circlet.web.service import SESSION_LIFETIME, BrowserSession, SignedIn, WebService
from circlet.web.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    cookie_is_secure,
    current_session,
    require_form_session,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def sign_in_page(request: Request, *, next_path: str, error: str = "", status: int = 200) -> Response:
    service: WebService = request.app.state.web_service
    nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
    if not (16 <= len(nonce) <= 64):
        nonce = secrets.token_urlsafe(24)
    response = page(
        request,
        "signin.html",
        {
            "title": "Sign in",
            "crumbs": [Crumb("Sign in")],
            "signin_csrf": service.csrf_token("signin:" + nonce),
            "next_path": next_path,
            "error": error,
        },
        status=status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE, nonce, httponly=True, samesite="lax", secure=cookie_is_secure(request), path="/signin"
    )
    return response


@router.get("/signin")
async def sign_in_form(request: Request, next: str = "/") -> Response:  # noqa: A002 (the query's name)
    if await current_session(request) is not None:
        return RedirectResponse(local_path(next), status_code=303, headers=SECURITY_HEADERS)
    return sign_in_page(request, next_path=local_path(next))


@router.post("/signin")
async def sign_in(
    request: Request,
    method: Annotated[str, Form()] = "password",
    login: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",  # noqa: A002
) -> Response:
    service: WebService = request.app.state.web_service
    database: Database = request.app.state.database
    nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
    if not nonce or not service.csrf_matches("signin:" + nonce, csrf):
        raise Forbidden("The form has expired or did not come from this site: reload the page and try again.")
    address = client_address(request)
    signed_in: SignedIn | None
    async with database.writing() as session:
        if method == "token":
            signed_in = await service.sign_in_with_token(session, token, address)
        else:
            signed_in = await service.sign_in_with_password(session, login, password, address)
    if signed_in is None:
        wrong = "That token is not valid." if method == "token" else "Wrong login or password."
        return sign_in_page(request, next_path=local_path(next), error=wrong, status=401)
    response = RedirectResponse(local_path(next), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.secret,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(request),
        path="/",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def sign_out(request: Request, browser: Annotated[BrowserSession, Depends(require_form_session)]) -> Response:
    service: WebService = request.app.state.web_service
    database: Database = request.app.state.database
    async with database.writing() as session:
        await service.sign_out(session, browser)
    response = RedirectResponse("/signin", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_is_secure(request))
    return response
