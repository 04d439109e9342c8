"""The Context operations, end to end through the real app and a real database."""

from __future__ import annotations

import uuid

import httpx
import pytest

from circlet.db.engine import Database
from tests.conftest import Account, make_account

API = "/api/v2"


async def create_context(client: httpx.AsyncClient, account: Account, name: str) -> dict[str, str]:
    response = await client.post(
        f"{API}/context", json={"name": name, "owner": {"id": account.org_id}}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_create_get_list_delete(client: httpx.AsyncClient, admin: Account) -> None:
    created = await create_context(client, admin, "deploy")
    assert set(created) == {"id", "name", "created_at"}
    assert created["name"] == "deploy" and created["created_at"].endswith("Z")

    fetched = await client.get(f"{API}/context/{created['id']}", headers=admin.headers)
    assert fetched.json() == created

    listed = await client.get(f"{API}/context", params={"owner-id": admin.org_id}, headers=admin.headers)
    assert listed.json() == {"items": [created], "next_page_token": None}

    deleted = await client.delete(f"{API}/context/{created['id']}", headers=admin.headers)
    assert (deleted.status_code, deleted.json()) == (200, {"message": "Context deleted."})
    gone = await client.get(f"{API}/context/{created['id']}", headers=admin.headers)
    assert (gone.status_code, gone.json()) == (404, {"message": "Context not found."})


@pytest.mark.parametrize("slug_form", ["gh/{name}", "github/{name}", "github/{upper}", "circleci/{id}"])
async def test_owner_slug_forms(client: httpx.AsyncClient, database: Database, slug_form: str) -> None:
    name = f"org-{uuid.uuid4().hex[:6]}"
    account = await make_account(database, org=name)
    slug = slug_form.format(name=name, upper=name.upper(), id=account.org_id)
    created = await client.post(
        f"{API}/context", json={"name": "c", "owner": {"slug": slug, "type": "organization"}}, headers=account.headers
    )
    assert created.status_code == 200, created.text
    listed = await client.get(f"{API}/context", params={"owner-slug": slug}, headers=account.headers)
    assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]


async def test_bitbucket_slugs(client: httpx.AsyncClient, database: Database) -> None:
    name = f"team-{uuid.uuid4().hex[:6]}"
    account = await make_account(database, org=f"bb/{name}")
    for slug in (f"bb/{name}", f"bitbucket/{name}"):
        listed = await client.get(f"{API}/context", params={"owner-slug": slug}, headers=account.headers)
        assert listed.status_code == 200, listed.text
    github = await client.get(f"{API}/context", params={"owner-slug": f"gh/{name}"}, headers=account.headers)
    assert github.status_code == 404


async def test_listing_without_owner(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    await create_context(client, account, "only-org")
    inferred = await client.get(f"{API}/context", headers=account.headers)
    assert [c["name"] for c in inferred.json()["items"]] == ["only-org"]

    await make_account(database, login=account.login, role="viewer")  # now in two organizations
    ambiguous = await client.get(f"{API}/context", headers=account.headers)
    assert ambiguous.status_code == 400
    assert "owner-id or owner-slug is required" in ambiguous.json()["message"]


async def test_pagination_walks_every_context_once(client: httpx.AsyncClient, admin: Account) -> None:
    names = {f"ctx-{i:02d}" for i in range(45)}
    for name in sorted(names):
        await create_context(client, admin, name)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"owner-id": admin.org_id, **({"page-token": token} if token else {})}
        page = (await client.get(f"{API}/context", params=params, headers=admin.headers)).json()
        seen.extend(item["name"] for item in page["items"])
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert sorted(seen) == sorted(names) and len(seen) == len(names)
    assert pages == 3


async def test_page_tokens_cannot_be_forged_or_reused_elsewhere(
    client: httpx.AsyncClient, database: Database, admin: Account
) -> None:
    for i in range(21):
        await create_context(client, admin, f"c{i}")
    first = (await client.get(f"{API}/context", params={"owner-id": admin.org_id}, headers=admin.headers)).json()
    token = first["next_page_token"]
    assert token

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (tampered, "garbage", "%%%", ""):
        response = await client.get(
            f"{API}/context", params={"owner-id": admin.org_id, "page-token": bad}, headers=admin.headers
        )
        assert response.status_code in (200, 400)
        if bad:
            assert response.status_code == 400, bad

    # A token from one listing is refused by another, even for a caller who may see both.
    other = await make_account(database, login=admin.login)
    foreign = await client.get(
        f"{API}/context", params={"owner-id": other.org_id, "page-token": token}, headers=admin.headers
    )
    assert (foreign.status_code, foreign.json()) == (400, {"message": "page-token does not belong to this listing."})
    contexts = first["items"]
    env = await client.get(
        f"{API}/context/{contexts[0]['id']}/environment-variable", params={"page-token": token}, headers=admin.headers
    )
    assert env.status_code == 400


async def test_env_vars_never_show_values(client: httpx.AsyncClient, admin: Account) -> None:
    context = await create_context(client, admin, "secrets")
    url = f"{API}/context/{context['id']}/environment-variable"
    first = await client.put(f"{url}/API_KEY", json={"value": "s3cr3t-value-1"}, headers=admin.headers)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"variable", "created_at", "updated_at", "context_id"}
    assert body["variable"] == "API_KEY" and body["context_id"] == context["id"]
    assert body["created_at"] == body["updated_at"]

    second = await client.put(f"{url}/API_KEY", json={"value": "s3cr3t-value-2"}, headers=admin.headers)
    assert second.json()["created_at"] == body["created_at"]
    assert second.json()["updated_at"] > body["updated_at"]

    listed = await client.get(url, headers=admin.headers)
    assert listed.json()["items"] == [second.json()]
    assert "s3cr3t" not in listed.text + first.text + second.text

    deleted = await client.delete(f"{url}/API_KEY", headers=admin.headers)
    assert deleted.json() == {"message": "Environment variable deleted."}
    again = await client.delete(f"{url}/API_KEY", headers=admin.headers)
    assert again.status_code == 404
    assert (await client.get(url, headers=admin.headers)).json() == {"items": [], "next_page_token": None}


async def test_env_var_pagination(client: httpx.AsyncClient, admin: Account) -> None:
    context = await create_context(client, admin, "many")
    url = f"{API}/context/{context['id']}/environment-variable"
    for i in range(25):
        await client.put(f"{url}/VAR_{i:02d}", json={"value": "x"}, headers=admin.headers)
    first = (await client.get(url, headers=admin.headers)).json()
    second = (await client.get(url, params={"page-token": first["next_page_token"]}, headers=admin.headers)).json()
    names = [i["variable"] for i in first["items"] + second["items"]]
    assert names == [f"VAR_{i:02d}" for i in range(25)]
    assert second["next_page_token"] is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("1ABC", "must start with a letter"), ("A-B", "must start with a letter"), ("A" * 301, "longer than 300")],
)
async def test_env_var_names_are_shell_names(
    client: httpx.AsyncClient, admin: Account, name: str, fragment: str
) -> None:
    context = await create_context(client, admin, "names")
    response = await client.put(
        f"{API}/context/{context['id']}/environment-variable/{name}", json={"value": "v"}, headers=admin.headers
    )
    assert response.status_code == 400 and fragment in response.json()["message"]


async def test_delete_context_removes_its_variables_and_restrictions(
    client: httpx.AsyncClient, database: Database, admin: Account
) -> None:
    from sqlalchemy import func, select

    from circlet.db.models import ContextEnvVar, ContextRestriction

    context = await create_context(client, admin, "doomed")
    await client.put(
        f"{API}/context/{context['id']}/environment-variable/TOKEN", json={"value": "abcd"}, headers=admin.headers
    )
    await client.post(
        f"{API}/context/{context['id']}/restrictions",
        json={"restriction_type": "expression", "restriction_value": 'pipeline.git.branch == "main"'},
        headers=admin.headers,
    )
    await client.delete(f"{API}/context/{context['id']}", headers=admin.headers)
    context_id = uuid.UUID(context["id"])
    async with database.reading() as session:
        variables = await session.scalar(
            select(func.count()).select_from(ContextEnvVar).where(ContextEnvVar.context_id == context_id)
        )
        restrictions = await session.scalar(
            select(func.count()).select_from(ContextRestriction).where(ContextRestriction.context_id == context_id)
        )
    assert (variables, restrictions) == (0, 0)


async def test_duplicate_name_is_a_conflict(client: httpx.AsyncClient, admin: Account) -> None:
    await create_context(client, admin, "same")
    again = await client.post(
        f"{API}/context", json={"name": "same", "owner": {"slug": admin.org_slug}}, headers=admin.headers
    )
    assert again.status_code == 409 and "already exists" in again.json()["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x"}, "owner: required field is missing"),
        ({"owner": {"slug": "gh/x"}}, "name: required field is missing"),
        ({"name": "x", "owner": {}}, "exactly one of owner.id and owner.slug"),
        ({"name": "x", "owner": {"id": "nope"}}, "owner.id"),
        ({"name": "x", "owner": {"slug": "gh/x", "type": "account"}}, "type organization"),
        ({"name": "x", "owner": {"slug": "gh/x"}, "extra": 1}, "extra: unexpected field"),
        ({"name": 5, "owner": {"slug": "gh/x"}}, "name"),
        ({"name": " padded", "owner": {"slug": "gh/x"}}, "whitespace"),
        ({"name": "", "owner": {"slug": "gh/x"}}, "1 to 200 characters"),
        ({"name": "n" * 201, "owner": {"slug": "gh/x"}}, "1 to 200 characters"),
        ([], "valid dictionary"),
    ],
)
async def test_malformed_create_bodies_name_the_field(
    client: httpx.AsyncClient, admin: Account, body: object, fragment: str
) -> None:
    if isinstance(body, dict) and body.get("owner") == {"slug": "gh/x"}:
        body = {**body, "owner": {"slug": admin.org_slug}}
    response = await client.post(f"{API}/context", json=body, headers=admin.headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


async def test_non_json_body(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        f"{API}/context", content=b"{not json", headers={**admin.headers, "content-type": "application/json"}
    )
    assert response.json() == {"message": "Request body is not valid JSON."} and response.status_code == 400


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"owner-id": "not-a-uuid"}, 400),
        ({"owner-type": "galaxy"}, 400),
        ({"owner-slug": "nonsense"}, 400),
        ({"owner-slug": "gh/does-not-exist"}, 404),
        ({"owner-id": str(uuid.uuid4())}, 404),
    ],
)
async def test_bad_listing_parameters(
    client: httpx.AsyncClient, admin: Account, params: dict[str, str], status: int
) -> None:
    response = await client.get(f"{API}/context", params=params, headers=admin.headers)
    assert response.status_code == status and "message" in response.json()


async def test_bad_path_ids_are_400(client: httpx.AsyncClient, admin: Account) -> None:
    for path in ("/context/nope", "/context/nope/environment-variable", "/context/nope/restrictions"):
        response = await client.get(API + path, headers=admin.headers)
        assert response.status_code == 400 and response.json()["message"]


async def test_another_orgs_context_is_indistinguishable_from_a_missing_one(
    client: httpx.AsyncClient, database: Database, admin: Account
) -> None:
    context = await create_context(client, admin, "private")
    outsider = await make_account(database)
    missing = str(uuid.uuid4())
    for context_id in (context["id"], missing):
        base = f"{API}/context/{context_id}"
        calls = [
            client.get(base, headers=outsider.headers),
            client.delete(base, headers=outsider.headers),
            client.get(f"{base}/environment-variable", headers=outsider.headers),
            client.put(f"{base}/environment-variable/X", json={"value": "v"}, headers=outsider.headers),
            client.delete(f"{base}/environment-variable/X", headers=outsider.headers),
            client.get(f"{base}/restrictions", headers=outsider.headers),
            client.post(
                f"{base}/restrictions",
                json={"restriction_type": "expression", "restriction_value": "true"},
                headers=outsider.headers,
            ),
            client.delete(f"{base}/restrictions/{uuid.uuid4()}", headers=outsider.headers),
        ]
        for call in calls:
            response = await call
            assert (response.status_code, response.json()) == (404, {"message": "Context not found."})
    listing = await client.get(f"{API}/context", params={"owner-id": admin.org_id}, headers=outsider.headers)
    assert listing.status_code == 404
    create = await client.post(
        f"{API}/context", json={"name": "intruder", "owner": {"id": admin.org_id}}, headers=outsider.headers
    )
    assert create.status_code == 404
