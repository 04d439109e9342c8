"""Signing a test's client in to the web app, as a browser does: the sign-in form, its CSRF token."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in_with_token(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/signin")
    return await client.post(
        "/signin", data={"method": "token", "token": token, "csrf": csrf_of(form.text), "next": "/"}
    )


async def sign_in_with_password(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    form = await client.get("/signin")
    return await client.post(
        "/signin", data={"method": "password", "login": login, "password": password, "csrf": csrf_of(form.text)}
    )


async def signed_in(client: httpx.AsyncClient, token: str) -> str:
    """Sign the client in; returns the session's CSRF token (read from a page's sign-out form)."""
    answer = await sign_in_with_token(client, token)
    assert answer.status_code == 303, answer.text
    return csrf_of((await client.get("/")).text)
