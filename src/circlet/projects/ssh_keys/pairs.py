"""SSH key pairs for checking code out, and their fingerprints in the forms CircleCI reports."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class SshKeyPair:
    public_key: str
    private_key: str
    fingerprint_md5: str
    fingerprint_sha256: str


def generate_key_pair(comment: str = "") -> SshKeyPair:
    """A fresh Ed25519 pair: the public half as an OpenSSH line, the private half as an OpenSSH PEM."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public_line = public.decode() + (f" {comment}" if comment else "")
    return SshKeyPair(public_line, private.decode(), md5_fingerprint(public_line), sha256_fingerprint(public_line))


def _key_blob(public_line: str) -> bytes:
    return base64.b64decode(public_line.split()[1])


def md5_fingerprint(public_line: str) -> str:
    """``c9:0b:1c:...``: MD5 of the key blob as colon-separated hex, the spec's default digest."""
    digest = hashlib.md5(_key_blob(public_line), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def sha256_fingerprint(public_line: str) -> str:
    """``SHA256:<base64, unpadded>``, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(_key_blob(public_line)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
