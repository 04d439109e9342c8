"""Project environment variables and checkout keys: masked, sealed at rest, never returned."""

from __future__ import annotations

import base64
import hashlib
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from circlet.db.engine import Database
from circlet.db.models import ProjectEnvVar
from circlet.projects import service as project_service
from circlet.projects.service import ProjectService, reseal_checkout_keys, reseal_env_vars
from circlet.secrets.keyring import SecretKeyError, drop_previous_keys, load_keyring, rotate_key_file
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
    service = ProjectService(load_keyring(settings.home), Limits(), settings.repo_rules())
    async with database.reading() as session:
        assert await service.env_var_values(session, uuid.UUID(project_id)) == {"S": SECRET}
        assert await service.preferred_private_key(session, uuid.UUID(project_id)) is not None


# The list keeps the masks it made (``ProjectService.list_env_vars``); what it answers must be what it
# would answer by opening every value, whatever changed since.


async def test_listed_masks_follow_every_new_value(client: httpx.AsyncClient, admin: Account) -> None:
    slug, project_id = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    await client.post(url, json={"name": "A", "value": "first-value-aaaa"}, headers=admin.headers)
    await client.post(url, json={"name": "B", "value": "short"}, headers=admin.headers)
    first = await client.get(url, headers=admin.headers)
    assert [(i["name"], i["value"]) for i in first.json()["items"]] == [("A", "xxxxaaaa"), ("B", "xxxx")]
    assert (await client.get(url, headers=admin.headers)).content == first.content
    # the same project by ids lists the same bytes; a wrong organization id is 404
    by_ids = f"{API}/project/circleci/{admin.org_id}/{project_id}/envvar"
    assert (await client.get(by_ids, headers=admin.headers)).content == first.content
    wrong = await client.get(f"{API}/project/circleci/{uuid.uuid4()}/{project_id}/envvar", headers=admin.headers)
    assert wrong.status_code == 404
    await client.post(url, json={"name": "A", "value": "second-value-bbbb"}, headers=admin.headers)
    await client.post(url, json={"name": "B", "value": "now-long-enough-cccc"}, headers=admin.headers)
    second = (await client.get(url, headers=admin.headers)).json()["items"]
    assert [(i["name"], i["value"]) for i in second] == [("A", "xxxxbbbb"), ("B", "xxxxcccc")]
    await client.delete(f"{url}/A", headers=admin.headers)
    await client.post(url, json={"name": "A", "value": "first-value-aaaa"}, headers=admin.headers)
    third = (await client.get(url, headers=admin.headers)).json()["items"]
    assert [(i["name"], i["value"]) for i in third] == [("A", "xxxxaaaa"), ("B", "xxxxcccc")]


async def test_listed_masks_keep_no_value(client: httpx.AsyncClient, admin: Account) -> None:
    slug, _ = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    await client.post(url, json={"name": "S", "value": SECRET}, headers=admin.headers)
    await client.post(url, json={"name": "PIN", "value": "4321"}, headers=admin.headers)
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    assert sorted(service._masks.values()) == ["xxxx", "xxxx1234"]
    assert not any(SECRET in context or SECRET.encode() in sealed for _, context, sealed in service._masks)


async def test_listed_masks_are_bounded(
    client: httpx.AsyncClient, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(project_service, "MAX_KEPT_MASKS", 3)
    slug, _ = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    for i in range(5):
        await client.post(url, json={"name": f"V{i}", "value": f"value-number-{i}"}, headers=admin.headers)
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    for _ in range(2):
        listed = (await client.get(url, headers=admin.headers)).json()["items"]
        assert [i["value"] for i in listed] == [f"xxxxer-{i}" for i in range(5)]
        assert 0 < len(service._masks) <= 3


async def test_masks_of_long_values_are_not_kept(client: httpx.AsyncClient, admin: Account) -> None:
    """A long value is opened at every list rather than kept by its sealed bytes (memory stays bounded)."""
    slug, _ = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    long_value = "L" * (project_service.MAX_KEPT_SEALED_BYTES + 100) + "tail"
    await client.post(url, json={"name": "LONG", "value": long_value}, headers=admin.headers)
    await client.post(url, json={"name": "SHORT", "value": "short-value"}, headers=admin.headers)
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    service._masks.clear()
    for _ in range(2):
        listed = (await client.get(url, headers=admin.headers)).json()["items"]
        assert {i["name"]: i["value"] for i in listed} == {"LONG": "xxxxtail", "SHORT": "xxxxalue"}
    assert sorted(service._masks.values()) == ["xxxxalue"]


async def test_a_listed_value_copied_to_another_row_still_does_not_open(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    """A value is bound to its row: its sealed bytes in another row fail to open even once listed."""
    slug, project_id = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    await client.post(url, json={"name": "A", "value": "value-of-a-aaaa"}, headers=admin.headers)
    await client.post(url, json={"name": "B", "value": "value-of-b-bbbb"}, headers=admin.headers)
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    async with database.writing() as session:
        row = (
            await session.execute(
                select(ProjectEnvVar.key_id, ProjectEnvVar.ciphertext).where(
                    ProjectEnvVar.project_id == uuid.UUID(project_id), ProjectEnvVar.name == "A"
                )
            )
        ).one()
        await session.execute(
            update(ProjectEnvVar)
            .where(ProjectEnvVar.project_id == uuid.UUID(project_id), ProjectEnvVar.name == "B")
            .values(key_id=row.key_id, ciphertext=row.ciphertext)
        )
    with pytest.raises(SecretKeyError):
        await client.get(url, headers=admin.headers)


async def test_listed_masks_survive_rotation(
    client: httpx.AsyncClient, admin: Account, database: Database, settings: Settings
) -> None:
    slug, _ = await project_slug(client, admin)
    url = f"{API}/project/{slug}/envvar"
    await client.post(url, json={"name": "S", "value": SECRET}, headers=admin.headers)
    before = await client.get(url, headers=admin.headers)
    rotate_key_file(settings.home)
    rotated = load_keyring(settings.home)
    async with database.writing() as session:
        assert await reseal_env_vars(session, rotated) == 1
    drop_previous_keys(settings.home)
    after = await client.get(url, headers=admin.headers)
    assert after.content == before.content
    service: ProjectService = client.app.state.project_service  # type: ignore[attr-defined]
    assert rotated.current_id in {key_id for key_id, _, _ in service._masks}
