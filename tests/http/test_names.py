"""Names are one line of text: contexts, groups and project and context variables refuse line
breaks (``\\n``, ``\\r``, U+2028, U+2029) and other control characters with a 400 naming the rule,
and store nothing."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Account
from tests.projects.test_secrets import project_slug

API = "/api/v2"
BROKEN = ["a\nb", "a\rb", "a\u2028b", "a\u2029b", "a\tb", "a\x1bb", "a\x85b", "a\x7fb"]
RULE = "a name is a single line: no line breaks"


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}: {RULE}")


@pytest.mark.parametrize("name", BROKEN)
async def test_names_with_line_breaks_or_controls_are_refused(
    client: httpx.AsyncClient, admin: Account, name: str
) -> None:
    h = admin.headers
    refused(
        await client.post(f"{API}/context", json={"name": name, "owner": {"slug": admin.org_slug}}, headers=h), "name"
    )
    contexts = (await client.get(f"{API}/context", params={"owner-slug": admin.org_slug}, headers=h)).json()
    assert contexts["items"] == []

    refused(await client.post(f"{API}/organizations/{admin.org_id}/groups", json={"name": name}, headers=h), "name")
    assert (await client.get(f"{API}/organizations/{admin.org_id}/groups", headers=h)).json()["items"] == []

    slug, _ = await project_slug(client, admin)
    variable = name.replace("a", "A").replace("b", "B")
    refused(await client.post(f"{API}/project/{slug}/envvar", json={"name": variable, "value": "v"}, headers=h), "name")
    assert (await client.get(f"{API}/project/{slug}/envvar", headers=h)).json()["items"] == []

    context = await client.post(f"{API}/context", json={"name": "ok", "owner": {"slug": admin.org_slug}}, headers=h)
    put = await client.put(
        f"{API}/context/{context.json()['id']}/environment-variable/{quote(variable, safe='')}",
        json={"value": "v"},
        headers=h,
    )
    refused(put, "env_var_name")


async def test_a_trailing_line_break_is_no_variable_name(client: httpx.AsyncClient, admin: Account) -> None:
    """``$`` of a regular expression matches before a final newline: the names are matched whole."""
    slug, _ = await project_slug(client, admin)
    created = await client.post(
        f"{API}/project/{slug}/envvar", json={"name": "TOKEN\n", "value": "v"}, headers=admin.headers
    )
    refused(created, "name")


async def test_single_line_names_in_any_script_are_accepted(client: httpx.AsyncClient, admin: Account) -> None:
    h = admin.headers
    for name in ("déploiement prod", "本番"):
        created = await client.post(f"{API}/context", json={"name": name, "owner": {"slug": admin.org_slug}}, headers=h)
        assert created.status_code == 200, created.text
        group = await client.post(f"{API}/organizations/{admin.org_id}/groups", json={"name": name}, headers=h)
        assert group.status_code in (200, 201), group.text
