"""Signing in to the web app: passwords, pasted tokens, sessions, CSRF, limits and audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from circlet.audit import repository as audit
from circlet.db.engine import Database
from circlet.settings import Settings
from circlet.users import service as accounts
from tests.conftest import app_client, make_account
from tests.web.helpers import csrf_of, sign_in_with_password, sign_in_with_token, signed_in


async def set_password(database: Database, login: str, password: str) -> None:
    async with database.writing() as session:
        await accounts.set_password(session, await accounts.find_user(session, login), password)


async def test_pages_send_a_visitor_without_a_session_to_sign_in(client: httpx.AsyncClient) -> None:
    answer = await client.get("/?branch=main")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2F%3Fbranch%3Dmain"


async def test_every_page_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/signin")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in answer.text  # no inline script: the policy would refuse it


async def test_a_password_signs_in_and_the_session_cookie_is_http_only(
    client: httpx.AsyncClient, database: Database
) -> None:
    account = await make_account(database)
    await set_password(database, account.login, "correct horse battery")
    answer = await sign_in_with_password(client, account.login.upper(), "correct horse battery")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("circlet_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    home = await client.get("/")
    assert home.status_code == 200 and account.login in home.text
    async with database.reading() as session:
        actions = [event.action async for event in audit.events(session)]
    assert "web.sign_in" in actions


async def test_a_wrong_password_is_refused_audited_and_rate_limited(
    client: httpx.AsyncClient, database: Database
) -> None:
    account = await make_account(database)
    await set_password(database, account.login, "correct horse battery")
    statuses = [(await sign_in_with_password(client, account.login, "wrong guess!")).status_code for _ in range(10)]
    assert statuses == [401] * 10
    # The eleventh try is refused even with the right password: the account's failures are exhausted.
    limited = await sign_in_with_password(client, account.login, "correct horse battery")
    assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
    assert int(limited.headers["retry-after"]) > 0
    async with database.reading() as session:
        failed = [event async for event in audit.events(session) if event.action == "web.sign_in.failed"]
    assert len(failed) == 10 and failed[0].details["method"] == "password"
    assert all("wrong guess" not in str(event.details) for event in failed)


async def test_an_unknown_login_is_refused_as_a_wrong_password_is(client: httpx.AsyncClient) -> None:
    answer = await sign_in_with_password(client, "nobody-here", "whatever it is")
    assert answer.status_code == 401 and "Wrong login or password." in answer.text


async def test_a_token_signs_in_and_revoking_it_ends_the_session(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    await signed_in(client, account.token)
    assert (await client.get("/")).status_code == 200
    async with database.writing() as session:
        user = await accounts.find_user(session, account.login)
        minted = await accounts.mint_token(session, user, "other")
    # Another token's revocation leaves this session alone; its own ends it.
    async with database.writing() as session:
        await accounts.revoke_token(session, minted.id)
    assert (await client.get("/")).status_code == 200
    me = await client.get("/api/v2/me", headers=account.headers)
    async with database.writing() as session:
        from circlet.auth.tokens import token_hash
        from circlet.users import repository as users

        owner = await users.find_token_owner(session, token_hash(account.token))
        assert owner is not None
        await accounts.revoke_token(session, owner.token_id)
    assert me.status_code == 200
    assert (await client.get("/")).status_code == 303


async def test_a_bad_token_is_refused(client: httpx.AsyncClient) -> None:
    answer = await sign_in_with_token(client, "circlet_pat_not-a-real-one")
    assert answer.status_code == 401 and "That token is not valid." in answer.text
    assert "circlet_pat_not-a-real-one" not in answer.text


async def test_the_sign_in_form_needs_its_csrf_token(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    await client.get("/signin")
    answer = await client.post("/signin", data={"method": "token", "token": account.token, "csrf": "0" * 64})
    assert answer.status_code == 403
    assert "circlet_session" not in answer.headers.get("set-cookie", "")


async def test_sign_out_ends_the_session_and_needs_the_csrf_token(
    client: httpx.AsyncClient, database: Database
) -> None:
    account = await make_account(database)
    csrf = await signed_in(client, account.token)
    forged = await client.post("/signout", data={"csrf": "f" * 64})
    assert forged.status_code == 403
    assert (await client.get("/")).status_code == 200
    secret = client.cookies["circlet_session"]
    answer = await client.post("/signout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    # The row is gone: the old cookie, replayed, signs no one in.
    client.cookies.set("circlet_session", secret)
    assert (await client.get("/")).status_code == 303


async def test_next_never_leaves_the_site(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    form = await client.get("/signin?next=//evil.example/x")
    answer = await client.post(
        "/signin",
        data={"method": "token", "token": account.token, "csrf": csrf_of(form.text), "next": "https://evil.example/"},
    )
    assert answer.headers["location"] == "/"


async def test_the_session_cookie_is_secure_behind_an_https_public_url(settings: Settings, database: Database) -> None:
    account = await make_account(database)
    async with app_client(settings.model_copy(update={"public_url": "https://ci.example"})) as client:
        client.base_url = httpx.URL("https://ci.example")  # a Secure cookie is sent back over https only
        answer = await sign_in_with_token(client, account.token)
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("circlet_session="))
    assert "Secure" in cookie


def test_set_password_reads_standard_input(tmp_path: Path) -> None:
    env = {"CIRCLET_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    (tmp_path / "home").mkdir(mode=0o700)
    run = [sys.executable, "-m", "circlet.cli", "admin"]
    subprocess.run([*run, "user", "create", "ada"], env=env, check=True, capture_output=True)
    short = subprocess.run(
        [*run, "user", "set-password", "ada"], env=env, input="short\n", capture_output=True, text=True
    )
    assert short.returncode == 1 and "8 to 1024 characters" in short.stderr
    done = subprocess.run(
        [*run, "user", "set-password", "ada"], env=env, input="a long enough secret\n", capture_output=True, text=True
    )
    assert done.returncode == 0 and '"password_set": true' in done.stdout
    assert "a long enough secret" not in done.stdout + done.stderr


@pytest.mark.parametrize("path", ["/pipelines/gh/a/b/x/workflows/y/jobs/1", "/pipelines/gh/a/b/1/workflows/y/jobs/z"])
async def test_a_url_that_does_not_parse_is_a_404_page(
    client: httpx.AsyncClient, database: Database, path: str
) -> None:
    account = await make_account(database)
    await signed_in(client, account.token)
    answer = await client.get(path)
    assert answer.status_code == 404 and "text/html" in answer.headers["content-type"]


async def test_a_removed_user_and_a_new_password_end_sessions(client: httpx.AsyncClient, database: Database) -> None:
    from sqlalchemy import delete

    from circlet.db.models import User

    account = await make_account(database)
    await set_password(database, account.login, "first password")
    assert (await sign_in_with_password(client, account.login, "first password")).status_code == 303
    assert (await client.get("/")).status_code == 200
    await set_password(database, account.login, "second password")
    assert (await client.get("/")).status_code == 303  # whoever knew the old password is signed out
    assert (await sign_in_with_password(client, account.login, "first password")).status_code == 401
    assert (await sign_in_with_password(client, account.login, "second password")).status_code == 303
    assert (await client.get("/")).status_code == 200
    async with database.writing() as session:
        await session.execute(delete(User).where(User.login == account.login))
    assert (await client.get("/")).status_code == 303
