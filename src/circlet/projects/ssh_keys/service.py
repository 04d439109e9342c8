"""A project's additional SSH keys (CircleCI's "Additional SSH Keys", API v1.1 ``ssh-key``): keys a
user brings, for one hostname or for every host, that an ``add_ssh_keys`` step installs.

Roles as for checkout keys (docs/compatibility.md): members of every role list them, only admins add
and remove them, an outsider gets 404. The private half is sealed at rest under the keyring, bound to
its row (``project-ssh-key:<project-id>:<row-id>``), and leaves the server only in a claimed task's
payload; responses carry the public half and fingerprints, audit entries the fingerprint.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, Principal
from circlet.db.models import ProjectSshKey
from circlet.db.types import utcnow
from circlet.http.errors import BadRequest, Conflict, NotFound
from circlet.projects.service import ProjectService
from circlet.projects.ssh_keys import repository as ssh_keys
from circlet.projects.ssh_keys.pairs import md5_fingerprint, sha256_fingerprint
from circlet.secrets import Keyring, SealedValue

MAX_SSH_KEYS_PER_PROJECT = 100
# OpenSSH's own limits on RSA moduli (SSH_RSA_MINIMUM_MODULUS_SIZE, SSH_RSA_MAXIMUM_MODULUS_SIZE): a
# key outside them is one ssh refuses to use.
RSA_BITS = (1024, 16384)
# A 16384-bit RSA key in PEM is about 12.7 KB; anything much longer is not a key.
MAX_PRIVATE_KEY_CHARS = 16 * 1024
# What a hostname may hold: a host name, an address, or an ssh ``Host`` pattern (``*``, ``?``). No
# spaces, quotes or line breaks, since the runner writes it into ``~/.ssh/config``.
HOSTNAME = re.compile(r"^[A-Za-z0-9._:*?-]{0,255}$")
OPENSSH_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
MISSING_KEY = "SSH key not found."
NOT_A_KEY = (
    "private_key: not a private key circlet can read; expected an unencrypted RSA, Ed25519 or ECDSA "
    "key in OpenSSH (BEGIN OPENSSH PRIVATE KEY) or PEM (BEGIN RSA/EC PRIVATE KEY, BEGIN PRIVATE KEY) form."
)
HAS_PASSPHRASE = (
    "private_key: the key is protected by a passphrase, which a job could not type; add it without one "
    "(ssh-keygen -p -N '' -f KEY removes it from a copy)."
)


def ssh_key_context(project_id: uuid.UUID, row_id: uuid.UUID) -> str:
    """Associated data binding a sealed private key to its row."""
    return f"project-ssh-key:{project_id}:{row_id}"


@dataclass(frozen=True)
class ParsedSshKey:
    """A private key as it is stored and installed (OpenSSH form), its public line and fingerprints."""

    private_key: str
    public_key: str
    fingerprint_md5: str
    fingerprint_sha256: str


def check_hostname(hostname: str | None) -> str:
    # ssh lower-cases the host it connects to before matching ``Host`` patterns, so a pattern is
    # stored lower-case too (and ``GitHub.com`` is the same hostname as ``github.com``).
    value = (hostname or "").strip().lower()
    if not HOSTNAME.match(value):
        raise BadRequest(
            "hostname: a host name, address or ssh Host pattern of at most 255 letters, digits and "
            "'.', '-', '_', ':', '*', '?' (empty: every host)."
        )
    return value


def _load(data: bytes) -> Any:
    """The key ``cryptography`` reads from OpenSSH or PEM text. RSA consistency checks are skipped
    here (OpenSSL's cost seconds for a 4096-bit key and a minute for 16384 bits, on the event loop);
    ``_check_rsa`` does the cheap arithmetic ones instead."""
    if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        return serialization.load_ssh_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    return serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)


def _check_rsa(key: rsa.RSAPrivateKey) -> None:
    if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
        raise BadRequest(f"private_key: an RSA key of {RSA_BITS[0]} to {RSA_BITS[1]} bits (ssh's limits).")
    numbers = key.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    p, q, d = numbers.p, numbers.q, numbers.d
    # The numbers belong together: n = pq, d inverts e modulo p-1 and q-1, and the CRT values ssh
    # signs with follow from them. Big-integer products and remainders, microseconds even at 16384
    # bits (primality tests are what make OpenSSL's own check slow).
    consistent = (
        p > 2
        and q > 2
        and p * q == n
        and (d * e) % (p - 1) == 1
        and (d * e) % (q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )
    if not consistent:
        raise BadRequest("private_key: the RSA key is damaged (its numbers do not belong together).")


def parse_private_key(text: str) -> ParsedSshKey:
    """The key a user pasted, checked: 400 with a clear message for anything a job could not use."""
    if len(text) > MAX_PRIVATE_KEY_CHARS:
        raise BadRequest(f"private_key: longer than {MAX_PRIVATE_KEY_CHARS} characters; not an SSH private key.")
    # Pasted keys arrive with Windows line ends or stray indentation; PEM parsers take neither.
    data = "\n".join(line.strip() for line in text.strip().splitlines()).encode("utf-8", "replace") + b"\n"
    try:
        key = _load(data)
    except TypeError as exc:  # cryptography's way of saying "encrypted, and no password given"
        raise BadRequest(HAS_PASSPHRASE if "password" in str(exc).lower() else NOT_A_KEY) from None
    except Exception:
        # Whatever the parsers raise for damaged input: ValueError mostly, but the OpenSSH one also
        # NotImplementedError, UnsupportedAlgorithm and others (found by fuzzing); all mean "not a
        # key we can use", never a server error.
        raise BadRequest(NOT_A_KEY) from None
    if isinstance(key, rsa.RSAPrivateKey):
        _check_rsa(key)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in OPENSSH_CURVES:
            raise BadRequest(f"private_key: ECDSA on {key.curve.name}; ssh takes P-256, P-384 or P-521 only.")
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BadRequest(NOT_A_KEY)
    # Stored and installed in OpenSSH form whatever form it came in: every ssh since 6.5 reads it
    # for all three types (an Ed25519 key in PKCS#8 PEM, for one, only recent ones do).
    try:
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except Exception:  # a key that loaded but that OpenSSH's format cannot hold
        raise BadRequest(NOT_A_KEY) from None
    public_line = public.decode()
    return ParsedSshKey(private, public_line, md5_fingerprint(public_line), sha256_fingerprint(public_line))


def ssh_key_body(key: ProjectSshKey) -> dict[str, Any]:
    """CircleCI's v1.1 ``ssh_keys`` item, and the SHA256 form (circlet's addition: the other name
    ``add_ssh_keys`` takes)."""
    return {
        "hostname": key.hostname,
        "fingerprint": key.fingerprint_md5,
        "fingerprint_sha256": key.fingerprint_sha256,
        "public_key": key.public_key,
    }


@dataclass
class SshKeyService:
    projects: ProjectService

    @property
    def keyring(self) -> Keyring:
        return self.projects.keyring

    async def settings(self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]) -> dict[str, Any]:
        """The v1.1 project settings, with the fields circlet has: who, where, and ``ssh_keys``."""
        found = await self.projects.find(session, principal, slug)
        project, org = found.project, found.org
        return {
            "vcs_type": org.vcs_type,
            "username": org.name,
            "reponame": project.name,
            "vcs_url": project.vcs_url,
            "default_branch": project.default_branch,
            "ssh_keys": [ssh_key_body(key) for key in await ssh_keys.list_ssh_keys(session, project.id)],
        }

    async def add(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        hostname: str | None,
        private_key: str,
    ) -> dict[str, Any]:
        found = await self.projects.find(session, principal, slug, ROLE_ADMIN, "add SSH keys")
        project_id = found.project.id
        host = check_hostname(hostname)
        parsed = parse_private_key(private_key)
        if await ssh_keys.count_ssh_keys(session, project_id) >= MAX_SSH_KEYS_PER_PROJECT:
            raise BadRequest(f"The project already has {MAX_SSH_KEYS_PER_PROJECT} SSH keys.")
        row_id = uuid.uuid4()
        sealed = self.keyring.seal(parsed.private_key, ssh_key_context(project_id, row_id))
        key = ProjectSshKey(
            id=row_id,
            project_id=project_id,
            hostname=host,
            public_key=parsed.public_key,
            fingerprint_md5=parsed.fingerprint_md5,
            fingerprint_sha256=parsed.fingerprint_sha256,
            key_id=sealed.key_id,
            private_key_ciphertext=sealed.ciphertext,
            created_at=utcnow(),
        )
        try:
            await ssh_keys.add_ssh_key(session, key)
        except ssh_keys.DuplicateSshKey:
            where = f"hostname '{host}'" if host else "every host (no hostname)"
            raise Conflict(f"The project already has the SSH key {parsed.fingerprint_md5} for {where}.") from None
        await _audit(session, principal, "project.ssh_key.create", project_id, found.org.id, key.fingerprint_md5)
        return ssh_key_body(key)

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        fingerprint: str,
        hostname: str | None,
    ) -> None:
        """Removes the key for ``hostname``, or for every hostname when none is given."""
        found = await self.projects.find(session, principal, slug, ROLE_ADMIN, "delete SSH keys")
        fingerprint = fingerprint.strip()
        if not fingerprint.startswith("SHA256:"):  # MD5 hex is shown lower-case; base64 is case-sensitive
            fingerprint = fingerprint.lower()
        host = None if hostname is None else hostname.strip().lower()
        rows = await ssh_keys.find_ssh_keys(session, found.project.id, fingerprint, host)
        if not rows:
            raise NotFound(MISSING_KEY)
        await ssh_keys.delete_ssh_keys(session, [row.id for row in rows])
        await _audit(
            session, principal, "project.ssh_key.delete", found.project.id, found.org.id, rows[0].fingerprint_md5
        )


async def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    project_id: uuid.UUID,
    org_id: uuid.UUID,
    fingerprint: str,
) -> None:
    """An audit entry naming the key by its fingerprint, never by any part of the key itself."""
    await audit.record(
        session,
        actor_id=principal.user_id,
        actor=principal.login,
        action=action,
        target_type="project",
        target_id=project_id,
        org_id=org_id,
        details={"fingerprint": fingerprint},
    )


async def ssh_keys_for_task(session: AsyncSession, keyring: Keyring, project_id: uuid.UUID) -> list[dict[str, Any]]:
    """A claimed task's ``ssh_keys`` (docs/runner-protocol.md): each key of the project once, named by
    its MD5 fingerprint (what runners before ``aliases`` match), its SHA256 form in ``aliases``, and
    the hostnames it is for (``[]``: every host, also when one of its rows has no hostname). The
    private halves are opened here and go into that one response only."""
    by_key: dict[str, dict[str, Any]] = {}
    every_host: set[str] = set()
    for row in await ssh_keys.list_ssh_keys(session, project_id):
        entry = by_key.get(row.fingerprint_md5)
        if entry is None:
            sealed = SealedValue(row.key_id, row.private_key_ciphertext)
            entry = by_key[row.fingerprint_md5] = {
                "fingerprint": row.fingerprint_md5,
                "private_key": keyring.open(sealed, ssh_key_context(project_id, row.id)),
                "aliases": [row.fingerprint_sha256],
                "hostnames": [],
            }
        if not row.hostname:
            every_host.add(row.fingerprint_md5)
        elif row.hostname not in entry["hostnames"]:
            entry["hostnames"].append(row.hostname)
    for fingerprint in every_host:
        by_key[fingerprint]["hostnames"] = []
    return list(by_key.values())


async def reseal_ssh_keys(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal up to ``batch`` project SSH private keys under the current key; returns how many
    (``circlet admin rotate-key``, as ``reseal_checkout_keys``)."""
    rows = await ssh_keys.ssh_keys_not_sealed_with(session, keyring.current_id, batch)
    for row in rows:
        context = ssh_key_context(row.project_id, row.id)
        opened = keyring.open(SealedValue(row.key_id, row.private_key_ciphertext), context)
        sealed = keyring.seal(opened, context)
        row.key_id, row.private_key_ciphertext = sealed.key_id, sealed.ciphertext
    await session.flush()
    return len(rows)
