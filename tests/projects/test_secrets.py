"""Project environment variables and checkout keys: masked, sealed at rest, never returned."""

from __future__ import annotations

import base64
import hashlib
import uuid

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from circlet.db.engine import Database
from circlet.projects.service import ProjectService, reseal_checkout_keys, reseal_env_vars
from circlet.secrets.keyring import drop_previous_keys, load_keyring, rotate_key_file
from circlet.settings import Limits, Settings
from tests.conftest import Account, postgres_dump, raw_sqlite_bytes

API = "/api/v2"
SECRET = "s3cr3t-value-NEVER-SHOWN-1234"


async def project_slug(client: httpx.AsyncClient, account: Account, name: str = "app") -> tuple[str, str]:
    response = await client.post(
        f"{API}/organization/{account.org_slug}/project", json={"name": name}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["slug"], response.json()["id"]


async def test_env_var_values_are_masked(client: httpx.AsyncClient, admin: Account) -> None:
    slug, _ = await project_slug(client, admin)
    created = await client.post(
        f"{API}/project/{slug}/envvar", json={"name": "TOKEN", "value": SECRET}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "TOKEN"
    assert created.json()["value"] == "xxxx1234"
    assert created.json()["created-at"].endswith("Z")
    short = await client.post(
        f"{API}/project/{slug}/envvar", json={"name": "PIN", "value": "4321"}, headers=admin.headers
    )
    assert short.json()["value"] == "xxxx"
    listed = await client.get(f"{API}/project/{slug}/envvar", headers=admin.headers)
    assert listed.json() == {
        "items": [
            {"name": "PIN", "value": "xxxx", "created-at": short.json()["created-at"]},
            {"name": "TOKEN", "value": "xxxx1234", "created-at": created.json()["created-at"]},
        ],
        "next_page_token": None,
    }
    one = await client.get(f"{API}/project/{slug}/envvar/TOKEN", headers=admin.headers)
    assert one.json()["value"] == "xxxx1234"
    assert SECRET not in listed.text + one.text + created.text


async def test_env_var_create_replaces_and_delete_removes(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    slug, project_id = await project_slug(client, admin)
    for value in ["first-value-aaaa", "second-value-bbbb"]:
        response = await client.post(
            f"{API}/project/{slug}/envvar", json={"name": "V", "value": value}, headers=admin.headers
        )
        assert response.status_code == 201
    assert (await client.get(f"{API}/project/{slug}/envvar/V", headers=admin.headers)).json()["value"] == "xxxxbbbb"
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    async with database.reading() as session:
        assert await service.env_var_values(session, uuid.UUID(project_id)) == {"V": "second-value-bbbb"}
    deleted = await client.delete(f"{API}/project/{slug}/envvar/V", headers=admin.headers)
    assert deleted.json() == {"message": "Environment variable deleted."}
    assert (await client.get(f"{API}/project/{slug}/envvar/V", headers=admin.headers)).status_code == 404
    assert (await client.delete(f"{API}/project/{slug}/envvar/V", headers=admin.headers)).status_code == 404


async def test_env_var_input_is_checked(client: httpx.AsyncClient, admin: Account) -> None:
    slug, _ = await project_slug(client, admin)
    for body in [
        {"name": "1BAD", "value": "x"},
        {"name": "has-dash", "value": "x"},
        {"name": "", "value": "x"},
        {"name": "OK"},
        {"name": "OK", "value": 5},
        {"name": "OK", "value": "x" * (32 * 1024 + 1)},
    ]:
        response = await client.post(f"{API}/project/{slug}/envvar", json=body, headers=admin.headers)
        assert response.status_code == 400, body
        assert set(response.json()) == {"message"}


async def test_checkout_keys_are_real_key_pairs(client: httpx.AsyncClient, admin: Account, database: Database) -> None:
    slug, project_id = await project_slug(client, admin)
    deploy = await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    assert deploy.status_code == 201, deploy.text
    key = deploy.json()
    assert set(key) == {"public-key", "type", "fingerprint", "preferred", "created-at"}
    assert key["type"] == "deploy-key" and key["preferred"] is True
    algorithm, blob = key["public-key"].split()[:2]
    assert algorithm == "ssh-ed25519"
    md5 = hashlib.md5(base64.b64decode(blob)).hexdigest()
    assert key["fingerprint"] == ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")

    user = await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "user-key"}, headers=admin.headers)
    assert user.json()["type"] == "github-user-key"
    listed = (await client.get(f"{API}/project/{slug}/checkout-key", headers=admin.headers)).json()
    assert [(k["type"], k["preferred"]) for k in listed["items"]] == [("deploy-key", False), ("github-user-key", True)]
    assert listed["next_page_token"] is None
    by_sha = (await client.get(f"{API}/project/{slug}/checkout-key?digest=sha256", headers=admin.headers)).json()
    assert by_sha["items"][0]["fingerprint"] == sha256

    found = await client.get(f"{API}/project/{slug}/checkout-key/{key['fingerprint']}", headers=admin.headers)
    assert found.json()["public-key"] == key["public-key"]
    found_by_sha = await client.get(f"{API}/project/{slug}/checkout-key/{sha256}", headers=admin.headers)
    assert found_by_sha.status_code == 200 and found_by_sha.json()["fingerprint"] == sha256

    # The private half opens for the engine and matches the public half.
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    async with database.reading() as session:
        private = await service.preferred_private_key(session, uuid.UUID(project_id))
    assert private is not None and "PRIVATE KEY" in private
    loaded = serialization.load_ssh_private_key(private.encode(), None)
    assert isinstance(loaded, Ed25519PrivateKey)
    public_line = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert public_line.decode() == user.json()["public-key"]
    assert "PRIVATE" not in str(listed) + found.text + deploy.text + user.text

    removed = await client.delete(
        f"{API}/project/{slug}/checkout-key/{user.json()['fingerprint']}", headers=admin.headers
    )
    assert removed.json() == {"message": "Checkout key deleted."}
    remaining = (await client.get(f"{API}/project/{slug}/checkout-key", headers=admin.headers)).json()["items"]
    assert [(k["fingerprint"], k["preferred"]) for k in remaining] == [(key["fingerprint"], True)]
    missing = await client.get(f"{API}/project/{slug}/checkout-key/00:11", headers=admin.headers)
    assert missing.status_code == 404
    bad = await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "other"}, headers=admin.headers)
    assert bad.status_code == 400


async def test_secrets_never_reach_the_database_in_plaintext(
    client: httpx.AsyncClient, admin: Account, database: Database, database_url: str
) -> None:
    slug, project_id = await project_slug(client, admin)
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "S", "value": SECRET}, headers=admin.headers)
    await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    async with database.reading() as session:
        private = await service.preferred_private_key(session, uuid.UUID(project_id))
    assert private is not None
    private_body = "".join(private.strip().splitlines()[1:-1])
    if database_url.startswith("sqlite"):
        raw = raw_sqlite_bytes(database_url)
        assert SECRET.encode() not in raw
        assert private_body[:40].encode() not in raw
    else:
        dump = await postgres_dump(database_url)
        assert SECRET not in dump
        assert private_body[:40] not in dump


async def test_rotation_reseals_project_secrets(
    client: httpx.AsyncClient, admin: Account, database: Database, settings: Settings
) -> None:
    """What ``circlet admin rotate-key`` does: a new key, every secret re-sealed, the old key dropped."""
    slug, project_id = await project_slug(client, admin)
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "S", "value": SECRET}, headers=admin.headers)
    await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    rotate_key_file(settings.home)
    rotated = load_keyring(settings.home)
    async with database.writing() as session:
        assert await reseal_env_vars(session, rotated) == 1
        assert await reseal_checkout_keys(session, rotated) == 1
    async with database.writing() as session:
        assert await reseal_env_vars(session, rotated) == 0
        assert await reseal_checkout_keys(session, rotated) == 0
    drop_previous_keys(settings.home)
    service = ProjectService(load_keyring(settings.home), Limits())
    async with database.reading() as session:
        assert await service.env_var_values(session, uuid.UUID(project_id)) == {"S": SECRET}
        assert await service.preferred_private_key(session, uuid.UUID(project_id)) is not None
