"""A project's additional SSH keys over API v1.1 (``ssh-key``, ``settings``): checked, sealed at rest,
never returned, re-sealed by a key rotation, and sent to the runner that claims a job of the project."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from sqlalchemy import select

from circlet.db.engine import Database
from circlet.db.models import AuditEvent, ProjectSshKey
from circlet.projects.ssh_keys.service import reseal_ssh_keys, ssh_keys_for_task
from circlet.secrets.keyring import drop_previous_keys, load_keyring, rotate_key_file
from circlet.settings import Settings
from tests.conftest import Account, Team, postgres_dump, raw_sqlite_bytes
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token

V1 = "/api/v1.1"
V2 = "/api/v2"
OPENSSH = serialization.PrivateFormat.OpenSSH
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL
# A throwaway Ed25519 key made by `ssh-keygen -N circlet-test-passphrase`: cryptography cannot write
# an encrypted OpenSSH key without bcrypt, and a passphrase key is what the test is about.
PASSPHRASE_OPENSSH = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCukFJSKU
dCVmC6YCPByybYAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAID0Lc7jcc98szA2J
ZUalqr8tw/ECNTS1fTpP3pYjNUc7AAAAoOMfMMj7pbvk6BKlVXYU4V0PHGTRFQP+hnrkJB
/Yy/PQIXNHplQ1O5JIqIeEQKlqB+2olKoah6pdQrjg4Se6KouMvqOJoInOy6VPBQN7BmUP
sYn4C1tzYILXI1UIXRukkRGNDAMjTSRptEIkYqTLWcLetrvx1f82+VQdMj1wr61kuuanpg
30cTrGNynjR1zqo/6jawh1TWAe/Pc8inZDIn8=
-----END OPENSSH PRIVATE KEY-----
"""
# A throwaway 512-bit RSA key (`openssl genrsa 512`): cryptography will not make one under 1024 bits.
RSA_512 = """-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAswu9wgYBchGM/TJ+
F3cBWuTdsRy0jndIWCxFNfmE9OE4OuQjfHqpdh9dL0gLw1DYG1994PAT9mAJ8rRc
w5sgJQIDAQABAkBy7R9xsk8tPAzG3alIQJAzGuMec7GGHRTn3ArU+YQZdn81hfN6
+sEAYJ8FZBEVBbDldNW7Nxv1kYCyxpWgWa4FAiEA7ddl0xCyws3kFwpbGnfA8J4t
D8FrbDq8phd+l8Tlh7cCIQDAty/OAKAbm0caEqA2m9siUrQQIC6224Ltn/pUZp+/
AwIhANkdklRUn/r43MizqWrF+xksK9KALMIF9IRiWivNkAKNAiEAtYAR0ud942Iz
7dda8vOIx+OyWHmm5WsJ/XitEC5zBzcCIEkjVby7yFcMRGs9nJDgswzyNtPWpj3k
JRtgvYsMeL0X
-----END PRIVATE KEY-----
"""


def pem(key: Any, form: serialization.PrivateFormat = OPENSSH, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return str(key.private_bytes(serialization.Encoding.PEM, form, encryption).decode())


def fingerprints(key: Any) -> tuple[str, str, str]:
    """(public line, MD5, SHA256) as ``ssh-keygen -l -E md5|sha256`` prints them."""
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    blob = base64.b64decode(line.split()[1])
    md5 = hashlib.md5(blob).hexdigest()
    sha256 = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return line, ":".join(md5[i : i + 2] for i in range(0, 32, 2)), f"SHA256:{sha256}"


def same_key(one: str, other: str) -> bool:
    """Whether two OpenSSH texts hold the same key (each writing of one differs: its check bytes are random)."""
    keys = [serialization.load_ssh_private_key(text.encode(), None) for text in (one, other)]
    raw = [key.private_bytes(serialization.Encoding.DER, PKCS8, serialization.NoEncryption()) for key in keys]
    return raw[0] == raw[1]


def body_lines(private_key: str) -> list[str]:
    """The base64 lines of a key: what must never appear outside the server's sealed column."""
    return [line for line in private_key.strip().splitlines() if not line.startswith("-----")]


async def project(client: httpx.AsyncClient, account: Account, name: str = "app") -> str:
    response = await client.post(
        f"{V2}/organization/{account.org_slug}/project", json={"name": name}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return str(response.json()["slug"])


async def add(
    client: httpx.AsyncClient, account: Account, slug: str, private_key: str, hostname: str | None = ""
) -> httpx.Response:
    body: dict[str, Any] = {"private_key": private_key}
    if hostname is not None:
        body["hostname"] = hostname
    return await client.post(f"{V1}/project/{slug}/ssh-key", json=body, headers=account.headers)


async def delete(client: httpx.AsyncClient, account: Account, slug: str, body: Any) -> httpx.Response:
    return await client.request("DELETE", f"{V1}/project/{slug}/ssh-key", json=body, headers=account.headers)


async def listed(client: httpx.AsyncClient, account: Account, slug: str) -> list[dict[str, Any]]:
    response = await client.get(f"{V1}/project/{slug}/settings", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["ssh_keys"])


async def test_add_list_and_delete(client: httpx.AsyncClient, admin: Account, database: Database) -> None:
    slug = await project(client, admin)
    key = ed25519.Ed25519PrivateKey.generate()
    public, md5, sha256 = fingerprints(key)
    private = pem(key)

    created = await add(client, admin, slug, private, "GitHub.com")
    assert created.status_code == 201, created.text
    assert created.json() == {
        "hostname": "github.com",
        "fingerprint": md5,
        "fingerprint_sha256": sha256,
        "public_key": public,
    }
    # The same key for every host is another entry; the same key for the same host again is not.
    assert (await add(client, admin, slug, private, None)).status_code == 201
    duplicate = await add(client, admin, slug, private, "github.com")
    assert duplicate.status_code == 409 and set(duplicate.json()) == {"message"}

    settings = await client.get(f"{V1}/project/{slug}/settings", headers=admin.headers)
    assert settings.status_code == 200
    org_name = admin.org_slug.split("/")[1]
    assert {k: v for k, v in settings.json().items() if k != "ssh_keys"} == {
        "vcs_type": "github",
        "username": org_name,
        "reponame": "app",
        "vcs_url": f"https://github.com/{org_name}/app",
        "default_branch": "main",
    }
    assert [(k["hostname"], k["fingerprint"]) for k in settings.json()["ssh_keys"]] == [("github.com", md5), ("", md5)]
    everything = created.text + duplicate.text + settings.text
    assert "PRIVATE" not in everything and not any(line in everything for line in body_lines(private))

    # Deleting by the SHA256 form for one hostname leaves the other; without a hostname, all go.
    missing = await delete(client, admin, slug, {"fingerprint": sha256, "hostname": "gitlab.com"})
    assert missing.status_code == 404 and missing.json() == {"message": "SSH key not found."}
    removed = await delete(client, admin, slug, {"fingerprint": sha256, "hostname": "github.com"})
    assert removed.status_code == 200 and removed.json() == {"message": "SSH key deleted."}
    assert [k["hostname"] for k in await listed(client, admin, slug)] == [""]
    assert (await add(client, admin, slug, private, "github.com")).status_code == 201
    assert (await delete(client, admin, slug, {"fingerprint": md5})).status_code == 200
    assert await listed(client, admin, slug) == []
    assert (await delete(client, admin, slug, {"fingerprint": md5})).status_code == 404

    # The audit trail names the key by its fingerprint, and by nothing else.
    async with database.reading() as session:
        events = (
            await session.execute(select(AuditEvent).where(AuditEvent.action.like("project.ssh_key.%")))
        ).scalars()
        details = [(event.action, event.details) for event in events]
    assert details == [
        ("project.ssh_key.create", {"fingerprint": md5}),
        ("project.ssh_key.create", {"fingerprint": md5}),
        ("project.ssh_key.delete", {"fingerprint": md5}),
        ("project.ssh_key.create", {"fingerprint": md5}),
        ("project.ssh_key.delete", {"fingerprint": md5}),
    ]


KEYS: dict[str, Callable[[], tuple[Any, str]]] = {
    "ed25519 openssh": lambda: (k := ed25519.Ed25519PrivateKey.generate(), pem(k)),
    "ed25519 pkcs8": lambda: (k := ed25519.Ed25519PrivateKey.generate(), pem(k, PKCS8)),
    "rsa pem": lambda: (k := rsa.generate_private_key(65537, 2048), pem(k, TRADITIONAL)),
    "rsa openssh": lambda: (k := rsa.generate_private_key(65537, 2048), pem(k)),
    "rsa pkcs8 crlf": lambda: (k := rsa.generate_private_key(65537, 2048), pem(k, PKCS8).replace("\n", "\r\n")),
    "ecdsa pem": lambda: (k := ec.generate_private_key(ec.SECP256R1()), pem(k, TRADITIONAL)),
    "ecdsa p384 openssh": lambda: (k := ec.generate_private_key(ec.SECP384R1()), pem(k)),
}


@pytest.mark.parametrize("form", list(KEYS))
async def test_every_form_of_key_is_taken_and_installed_in_openssh_form(
    client: httpx.AsyncClient, admin: Account, database: Database, form: str
) -> None:
    slug = await project(client, admin)
    key, text = KEYS[form]()
    public, md5, sha256 = fingerprints(key)
    created = await add(client, admin, slug, "\n  " + text + "\n")
    assert created.status_code == 201, created.text
    assert (created.json()["fingerprint"], created.json()["fingerprint_sha256"]) == (md5, sha256)
    assert created.json()["public_key"] == public
    project_id = (await client.get(f"{V2}/project/{slug}", headers=admin.headers)).json()["id"]
    async with database.reading() as session:
        [sent] = await ssh_keys_for_task(session, client.app.state.keyring, uuid.UUID(project_id))  # type: ignore[attr-defined]
    assert sent["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    loaded = serialization.load_ssh_private_key(sent["private_key"].encode(), None)
    assert fingerprints(loaded)[1] == md5


def _bad_rsa() -> str:
    """A key whose numbers do not belong together: a private exponent that is not the key's (still
    under the modulus, so that the key can be built at all)."""
    a = rsa.generate_private_key(65537, 1024).private_numbers()
    broken = rsa.RSAPrivateNumbers(a.p, a.q, a.d - 2, a.dmp1, a.dmq1, a.iqmp, a.public_numbers)
    return pem(broken.private_key(unsafe_skip_rsa_key_validation=True), TRADITIONAL)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"private_key": "not a key"}, "not a private key circlet can read"),
        ({"private_key": ""}, "not a private key circlet can read"),
        (
            {"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"},
            "not a private key",
        ),
        ({"private_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0Lc7jcc98szA2JZUalqr8tw/ECNTS1fTpP3pYjNUc7"}, "not a"),
        ({"private_key": "x" * 20000}, "longer than"),
        ({"private_key": "a\x00b"}, "NUL"),
        ({"private_key": 5}, "private_key"),
        ({"hostname": "github.com"}, "private_key: required"),
        ({"private_key": "k", "hostname": "a b"}, "hostname"),
        ({"private_key": "k", "hostname": "github.com\n  ProxyCommand evil"}, "hostname"),
        ({"private_key": "k", "hostname": "h" * 256}, "hostname"),
        ([], "valid dictionary"),
    ],
)
async def test_bad_input_is_400(client: httpx.AsyncClient, admin: Account, body: Any, says: str) -> None:
    slug = await project(client, admin)
    response = await client.post(f"{V1}/project/{slug}/ssh-key", json=body, headers=admin.headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message"} and says in response.json()["message"]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: pem(dsa.generate_private_key(2048), PKCS8), "not a private key circlet can read"),
        (lambda: pem(ec.generate_private_key(ec.SECP256K1()), PKCS8), "ssh takes P-256, P-384 or P-521 only"),
        (lambda: RSA_512, "an RSA key of 1024 to 16384 bits"),
        (_bad_rsa, "the RSA key is damaged"),
    ],
    ids=["dsa", "secp256k1", "rsa-512", "rsa-mismatched"],
)
async def test_keys_ssh_cannot_use_are_400(
    client: httpx.AsyncClient, admin: Account, make: Callable[[], str], says: str
) -> None:
    slug = await project(client, admin)
    response = await add(client, admin, slug, make())
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]


async def test_odd_requests_are_4xx_json(client: httpx.AsyncClient, admin: Account) -> None:
    slug = await project(client, admin)
    url = f"{V1}/project/{slug}/ssh-key"
    for response in [
        await client.post(url, content=b"{not json", headers={**admin.headers, "Content-Type": "application/json"}),
        await client.post(url, content=b"\x00\xff", headers=admin.headers),
        await client.request("DELETE", url, headers=admin.headers),
        await client.request("DELETE", url, json={"fingerprint": "a\x00"}, headers=admin.headers),
        await client.request("DELETE", url, json={"hostname": "x"}, headers=admin.headers),
        await client.post(url, content=b"x" * (20 * 1024 * 1024), headers=admin.headers),
    ]:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()) == {"message"}


async def test_passphrase_keys_are_400(client: httpx.AsyncClient, admin: Account) -> None:
    slug = await project(client, admin)
    for private in [
        PASSPHRASE_OPENSSH,
        pem(rsa.generate_private_key(65537, 2048), PKCS8, b"passphrase"),
        pem(ec.generate_private_key(ec.SECP256R1()), TRADITIONAL, b"passphrase"),
    ]:
        response = await add(client, admin, slug, private)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("private_key: the key is protected by a passphrase")


# (method, path, body, status by role): readers as for checkout keys, writers admins only.
ROLE_CASES = [
    ("GET", "/settings", None, {"admin": 200, "member": 200, "viewer": 200, "outsider": 404}),
    ("POST", "/ssh-key", "new", {"admin": 201, "member": 403, "viewer": 403, "outsider": 404}),
    ("DELETE", "/ssh-key", "seeded", {"admin": 200, "member": 403, "viewer": 403, "outsider": 404}),
]


@pytest.mark.parametrize("role", ["admin", "member", "viewer", "outsider"])
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), ROLE_CASES, ids=[f"{m} {p}" for m, p, _, _ in ROLE_CASES]
)
async def test_roles(
    client: httpx.AsyncClient, team: Team, role: str, method: str, path: str, body: str | None, expected: dict[str, int]
) -> None:
    slug = await project(client, team.admin)
    seeded = (await add(client, team.admin, slug, pem(ed25519.Ed25519PrivateKey.generate()))).json()
    payload: Any = {
        None: None,
        "new": {"private_key": pem(ed25519.Ed25519PrivateKey.generate()), "hostname": "example.com"},
        "seeded": {"fingerprint": seeded["fingerprint"]},
    }[body]
    caller = team.by_role(role)
    response = await client.request(method, f"{V1}/project/{slug}{path}", json=payload, headers=caller.headers)
    assert response.status_code == expected[role], response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"message"}
        assert response.json()["message"] in (
            "Project not found.",
            f"Permission denied: only organization admins may {'add' if method == 'POST' else 'delete'} SSH keys.",
        )


async def test_other_orgs_projects_and_no_token(client: httpx.AsyncClient, team: Team) -> None:
    slug = await project(client, team.admin)
    other = await project(client, team.outsider)
    private = pem(ed25519.Ed25519PrivateKey.generate())
    # The outsider's own project under the team's org name, and the team's under the outsider's token.
    assert (await add(client, team.outsider, slug, private)).status_code == 404
    assert (await add(client, team.admin, other, private)).status_code == 404
    assert (
        await client.get(f"{V1}/project/gh/no-such-org/app/settings", headers=team.admin.headers)
    ).status_code == 404
    for response in [
        await client.post(f"{V1}/project/{slug}/ssh-key", json={"private_key": private}),
        await client.get(f"{V1}/project/{slug}/settings"),
        await client.request("DELETE", f"{V1}/project/{slug}/ssh-key", json={"fingerprint": "aa"}),
        await client.get(f"{V1}/project/{slug}/settings", headers={"Circle-Token": "circlet_pat_wrong"}),
    ]:
        assert response.status_code == 401 and set(response.json()) == {"message"}


def secret_needles(key: Any) -> list[bytes]:
    """Pieces of a key's private numbers as any plaintext form of it would hold them: raw, hex, and
    base64 at each of the three byte alignments. (Not lines of the key file: an OpenSSH or PEM private
    key holds its public half too, which is stored in the clear on purpose.)"""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        values = [numbers.d, numbers.p, numbers.q]
        secrets = [value.to_bytes((value.bit_length() + 7) // 8, "big") for value in values]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        secrets = [key.private_bytes_raw()]
    else:
        secrets = [key.private_numbers().private_value.to_bytes(48, "big").lstrip(b"\0")]
    needles = []
    for secret in secrets:
        needles += [secret[:16], secret.hex()[:32].encode()]
        for shift in range(3):
            encoded = base64.b64encode(secret[shift:])
            needles += [encoded[start : start + 16] for start in range(4, len(encoded) - 16, 16)]
    return needles


async def test_private_keys_never_reach_the_database_in_plaintext(
    client: httpx.AsyncClient, admin: Account, database_url: str
) -> None:
    slug = await project(client, admin)
    keys = [rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()]
    for key, form in zip(keys, [TRADITIONAL, OPENSSH], strict=True):
        assert (await add(client, admin, slug, pem(key, form), "github.com")).status_code == 201
    needles = [needle for key in keys for needle in secret_needles(key)]
    # The needles do find the keys in plaintext: in the OpenSSH form the runner gets.
    project_id = (await client.get(f"{V2}/project/{slug}", headers=admin.headers)).json()["id"]
    database = client.app.state.database  # type: ignore[attr-defined]
    async with database.reading() as session:
        sent = await ssh_keys_for_task(session, client.app.state.keyring, uuid.UUID(project_id))  # type: ignore[attr-defined]
    for key in sent:
        body = "".join(body_lines(key["private_key"])).encode()
        assert any(needle in body for needle in needles)
    if database_url.startswith("sqlite"):
        raw = raw_sqlite_bytes(database_url)
        assert not [needle for needle in needles if needle in raw]
    else:
        dump = await postgres_dump(database_url)
        assert not [needle for needle in needles if needle.decode("latin-1") in dump]


async def test_rotation_reseals_ssh_keys(
    client: httpx.AsyncClient, admin: Account, database: Database, settings: Settings
) -> None:
    """What ``circlet admin rotate-key`` does for these keys: re-sealed under the new key, still open."""
    slug = await project(client, admin)
    private = pem(ed25519.Ed25519PrivateKey.generate())
    await add(client, admin, slug, private, "github.com")
    await add(client, admin, slug, private, "")
    project_id = uuid.UUID((await client.get(f"{V2}/project/{slug}", headers=admin.headers)).json()["id"])
    before = load_keyring(settings.home)
    rotate_key_file(settings.home)
    rotated = load_keyring(settings.home)
    assert rotated.current_id != before.current_id
    async with database.writing() as session:
        assert await reseal_ssh_keys(session, rotated, batch=1) == 1
        assert await reseal_ssh_keys(session, rotated) == 1
    async with database.writing() as session:
        assert await reseal_ssh_keys(session, rotated) == 0
    async with database.reading() as session:
        rows = (await session.execute(select(ProjectSshKey.key_id))).scalars().all()
    assert set(rows) == {rotated.current_id}
    drop_previous_keys(settings.home)
    async with database.reading() as session:
        [sent] = await ssh_keys_for_task(session, load_keyring(settings.home), project_id)
    assert same_key(sent["private_key"], private)


async def test_deleting_the_project_deletes_its_keys(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    slug = await project(client, admin)
    await add(client, admin, slug, pem(ed25519.Ed25519PrivateKey.generate()))
    assert (await client.delete(f"{V2}/project/{slug}", headers=admin.headers)).status_code == 200
    async with database.reading() as session:
        assert (await session.execute(select(ProjectSshKey))).scalars().all() == []


CONFIG = """
version: 2.1
jobs:
  build:
    machine: true
    resource_class: local
    steps: [add_ssh_keys]
workflows: {main: {jobs: [build]}}
"""


async def test_a_claimed_task_carries_each_key_once_with_its_names_and_hosts(
    client: httpx.AsyncClient, admin: Account, database: Database, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    every, scoped = ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)
    await add(client, admin, slug, pem(every), "")
    await add(client, admin, slug, pem(every), "github.com")
    await add(client, admin, slug, pem(scoped, TRADITIONAL), "github.com")
    await add(client, admin, slug, pem(scoped, TRADITIONAL), "*.example.com")
    runner = ProtocolRunner(client, await runner_token(database))
    assert (await client.post(f"{V2}/project/{slug}/pipeline", headers=admin.headers)).status_code == 201
    task = await runner.claim(wait=5)
    assert task is not None
    _, every_md5, every_sha = fingerprints(every)
    _, scoped_md5, scoped_sha = fingerprints(scoped)
    keys = {key["fingerprint"]: key for key in task["ssh_keys"]}
    assert set(keys) == {every_md5, scoped_md5}
    assert (keys[every_md5]["aliases"], keys[every_md5]["hostnames"]) == ([every_sha], [])
    assert (keys[scoped_md5]["aliases"], keys[scoped_md5]["hostnames"]) == (
        [scoped_sha],
        ["github.com", "*.example.com"],
    )
    assert same_key(keys[scoped_md5]["private_key"], pem(scoped))
